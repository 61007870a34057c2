# ports.sh - free TCP ports for the benchmark scripts (sourced, not run).
#
#   . "$(dirname "$0")/ports.sh"
#   free_port http || exit 1      # sets $http to a port nothing listens on
#
# Ports come from below the kernel's ephemeral range, so no outgoing
# connection (curl, wrk) can be holding one between the check and the
# server's bind, and a port handed out once is not handed out again in the
# same script. free_port sets a variable by name instead of printing,
# because $(free_port) would run in a subshell and forget what it handed out.

port_open() {
    # bash's /dev/tcp: succeeds only when something accepts on the port.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_ports_low=32768
read -r _ports_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
[ "$_ports_low" -gt 12000 ] || _ports_low=32768
_ports_used=" "

free_port() {
    local port
    for _ in $(seq 100); do
        port=$((10000 + RANDOM % (_ports_low - 10000)))
        case "$_ports_used" in *" $port "*) continue ;; esac
        if ! port_open "$port"; then
            _ports_used="$_ports_used$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    echo "$(basename "$0"): no free port found" >&2
    return 1
}

# Four free ports for a retaild (broker_port, http_port, events_port,
# publish_port), and the variables that give them to it in the array
# retaild_env, for `env ... "${retaild_env[@]}" "$build/retaild"`.
retaild_ports_env() {
    free_port broker_port || return 1
    free_port http_port || return 1
    free_port events_port || return 1
    free_port publish_port || return 1
    retaild_env=(RETAIL_BROKER_ENDPOINT="tcp://127.0.0.1:$broker_port"
        RETAIL_HTTP_PORT="$http_port"
        RETAIL_EVENTS_ENDPOINT="tcp://127.0.0.1:$events_port"
        RETAIL_EVENTS_PUBLISH_ENDPOINT="tcp://127.0.0.1:$publish_port")
}
