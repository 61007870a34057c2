#!/usr/bin/env bash
# soak_plot.sh - the soak's plot: resident memory (in all, anonymous, and
# file-backed) and the broker's request rate over time, from soak.tsv
# (tools/reliability/soak.sh writes both; docs/soak.svg is one).
#
#   tools/reliability/soak_plot.sh SOAK_TSV OUT_SVG TITLE
#
# gnuplot is installed on demand (gnuplot-nox). The request rate of an
# interval is the difference of the broker's counters over it; an
# interval of no time (the last sample, taken as the load ends, can fall
# in the same second as the one before) is left out.
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 SOAK_TSV OUT_SVG TITLE" >&2
    exit 2
fi
tsv=$1 svg=$2 title=$3
if ! command -v gnuplot >/dev/null; then
    echo "soak_plot: installing gnuplot-nox" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gnuplot-nox >/dev/null
fi
series=$(mktemp /tmp/retail-soak-plot.XXXXXX)
trap 'rm -f "$series"' EXIT
# minutes, RSS, anonymous, file-backed (MiB), requests per second
awk -F'\t' 'NR == 1 { next }
     n++ && $1 > pt { printf "%.3f\t%.1f\t%.1f\t%.1f\t%.1f\n", $1 / 60, $2 / 1024, $9 / 1024,
                      $10 / 1024, ($6 + $7 + $8 - prev) / ($1 - pt) }
     { prev = $6 + $7 + $8; pt = $1 }' "$tsv" >"$series"
gnuplot <<GP
set terminal svg size 900,480 dynamic font "sans,11"
set output "$svg"
set title "$title"
set xlabel "minutes"
set ylabel "resident memory (MiB)"
set y2label "broker requests per second"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key outside below horizontal
set grid
plot "$series" using 1:2 with lines lw 2 title "RSS" axes x1y1, \
     "$series" using 1:4 with lines lw 2 title "file-backed (LMDB's maps)" axes x1y1, \
     "$series" using 1:3 with lines lw 2 title "anonymous (heap, stacks; Argon2id's 64 MiB per password check)" axes x1y1, \
     "$series" using 1:5 with lines title "broker requests/s (calls between services included)" axes x1y2
GP
