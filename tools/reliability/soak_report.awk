# soak_report.awk - the soak's figures from its samples (soak.tsv, made by
# tools/reliability/soak.sh; columns: t_s rss_kib fds lmdb_bytes
# data_bytes ok unavailable timeout rss_anon_kib rss_file_kib).
#
#   awk -F'\t' -v skip=60 -f tools/reliability/soak_report.awk soak.tsv
#
# Each series gets a least-squares line over the samples from t >= skip
# seconds (start-up and the first registrations are not the steady state;
# all samples when the run is shorter), reported per minute.
#
# Two series need more than a line through every sample:
#  - Anonymous memory jumps by 64 MiB for each password check in flight
#    (Argon2id's working memory, freed when the hash ends) whenever a
#    virtual user logs in again, so single samples swing by 130 MiB and
#    their line says more about when the samples fell than about a leak.
#    A leak raises the floor: the smallest sample of each whole minute,
#    and the line through those floors, are what is reported beside it.
#  - The request rate of an interval is the difference of the broker's
#    counters over it. The last sample is taken after the load ended (and
#    may be in the same second as the one before), so the rate's line
#    stops at the sample before it.
NR == 1 { next }
{
    t[n] = $1; rss[n] = $2; fds[n] = $3; mdb[n] = $4; dir[n] = $5
    ok[n] = $6; bad[n] = $7 + $8; anon[n] = $9; file[n] = $10; n++
}
# The slope per minute of y over samples lo..hi-1 (x: t in minutes).
function fit(x, y, lo, hi,    i, sx, sy, sxx, sxy, m) {
    sx = sy = sxx = sxy = m = 0
    for (i = lo; i < hi; i++) {
        sx += x[i]; sy += y[i]; sxx += x[i] * x[i]; sxy += x[i] * y[i]; m++
    }
    if (m < 2 || m * sxx - sx * sx == 0) return 0
    return (m * sxy - sx * sy) / (m * sxx - sx * sx)
}
function slope(y) { return fit(minutes, y, first, n) }
END {
    if (n < 2) {
        print "soak_report: fewer than two samples" > "/dev/stderr"
        exit 1
    }
    for (i = 0; i < n; i++) minutes[i] = t[i] / 60
    first = 0
    if (t[n - 2] > skip)
        while (t[first] < skip) first++
    for (i = 1; i < n; i++) {
        dt = t[i] - t[i - 1]
        r[i] = (dt > 0 ? (ok[i] - ok[i - 1] + bad[i] - bad[i - 1]) / dt : 0)
    }
    r[0] = r[1]
    # the floor of anonymous memory in each whole minute of the fitted part
    floors = 0
    for (i = first; i < n; i++) {
        m = int(t[i] / 60)
        if (!(m in floor_of) || anon[i] < floor_of[m]) floor_of[m] = anon[i]
    }
    for (m in floor_of) {
        # a minute whose samples do not cover it (the last, cut short) is left out
        if ((m + 1) * 60 > t[n - 1] + 1) continue
        fx[floors] = m + 0.5; fy[floors] = floor_of[m]; floors++
    }
    fmin = fmax = (floors ? fy[0] : 0)
    for (i = 1; i < floors; i++) {
        if (fy[i] < fmin) fmin = fy[i]
        if (fy[i] > fmax) fmax = fy[i]
    }
    amax = 0
    for (i = first; i < n; i++) if (anon[i] > amax) amax = anon[i]
    span = t[n - 2] - t[first]
    printf "samples %d (fitted: %d, from t=%ds)\n", n, n - first, t[first]
    printf "rss         %8.0f KiB at the end, slope %+9.1f KiB/min\n", rss[n - 1], slope(rss)
    printf "  file      %8.0f KiB at the end, slope %+9.1f KiB/min (LMDB pages mapped and touched)\n",
        file[n - 1], slope(file)
    printf "  anonymous %8.0f KiB at the end, slope %+9.1f KiB/min (samples; the largest %.0f KiB)\n",
        anon[n - 1], slope(anon), amax
    printf "  anon floor %7.0f to %.0f KiB over %d minutes, slope %+9.1f KiB/min (each minute's smallest sample)\n",
        fmin, fmax, floors, fit(fx, fy, 0, floors)
    printf "descriptors %8d at the end, slope %+9.2f /min\n", fds[n - 1], slope(fds)
    printf "lmdb files  %8.1f MiB at the end, slope %+9.1f KiB/min\n", mdb[n - 1] / 1048576, slope(mdb) / 1024
    printf "data dir    %8.1f MiB at the end, slope %+9.1f KiB/min\n", dir[n - 1] / 1048576, slope(dir) / 1024
    printf "requests    %8d ok, %d unavailable or timeout; rate %.0f/s (fitted part), slope %+.1f /s per min\n",
        ok[n - 1], bad[n - 1],
        (span > 0 ? (ok[n - 2] + bad[n - 2] - ok[first] - bad[first]) / span : 0),
        (n - 1 - first >= 2 ? fit(minutes, r, first, n - 1) : 0)
    printf "errors      %8d in the fitted part\n", bad[n - 1] - bad[first]
}
