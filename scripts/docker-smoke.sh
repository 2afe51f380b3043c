#!/usr/bin/env bash
# Manual end-to-end check of the Docker setup (not run by CI: it builds an image and
# runs a cluster for a minute or two). In a compose project of its own (ringcache-smoke,
# state in .ringcache/docker-smoke, ports 127.0.0.1:7711-7713, network 172.28.8.0/24),
# so a cluster started with docker-cluster.sh is left alone:
#
#   1. build: scripts/docker-build.sh (skipped with --skip-build; --skip-cargo builds
#      the image from the binaries already built)
#   2. up: 3 nodes, waits until every node is active
#   3. set/get keys from the host through the client config (every node owns some)
#   4. docker kill node-3: it must show as down, the others keep serving (writes and
#      reads succeed; keys node-3 owned are gone: no replication yet)
#   5. docker start node-3: it must become active again and get its share back, with
#      the keys written while it was down; every container must be healthy
#   6. down --volumes (kept with RINGCACHE_SMOKE_KEEP=1)
#
# Exits 0 when every step passed, else 1 with the step that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build=1
build_args=()
for arg in "$@"; do
    case $arg in
        --skip-build) build=0 ;;
        --skip-cargo) build_args+=(--skip-cargo) ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker-smoke: unknown argument $arg" >&2; exit 2 ;;
    esac
done

export RINGCACHE_PROJECT=${RINGCACHE_PROJECT:-ringcache-smoke}
export RINGCACHE_DOCKER_DIR=${RINGCACHE_DOCKER_DIR:-$root/.ringcache/docker-smoke}
export RINGCACHE_NET=${RINGCACHE_NET:-172.28.8}
export RINGCACHE_PORT_BASE=${RINGCACHE_PORT_BASE:-7710}
export RINGCACHE_WAIT=${RINGCACHE_WAIT:-120}
cluster=$root/scripts/docker-cluster.sh
victim=3
victim_container=$RINGCACHE_PROJECT-node-$victim
keys=30
started=$SECONDS
step="setup"

log() { printf '[%4ds] %s\n' $((SECONDS - started)) "$*"; }
fail() {
    echo "docker-smoke: FAILED in step \"$step\": $*" >&2
    exit 1
}
ctl() { "$cluster" ctl "$@"; }

cleanup() {
    local rc=$?
    if ((rc != 0)); then
        echo "--- last log lines of each node ---" >&2
        for c in $(docker ps -a --filter "name=^$RINGCACHE_PROJECT-node-" --format '{{.Names}}' | sort); do
            echo "## $c ($(docker inspect -f '{{.State.Status}}' "$c"))" >&2
            docker logs --tail 8 "$c" 2>&1 | sed 's/^/   /' >&2
        done
    fi
    if [[ ${RINGCACHE_SMOKE_KEEP:-0} == 1 ]]; then
        log "keeping the cluster (RINGCACHE_SMOKE_KEEP=1): $cluster down --volumes to stop it"
    else
        "$cluster" down --volumes >/dev/null 2>&1 || true
        rm -rf "$RINGCACHE_DOCKER_DIR"
    fi
    if ((rc == 0)); then
        log "PASSED"
    fi
}

# The cluster status as JSON (one try; the caller polls).
status_json() { ctl --timeout 2s cluster status --json 2>/dev/null; }

# poll SECONDS DESCRIPTION JQ_FILTER: until the filter, applied to the cluster status,
# prints "ok"; otherwise fails with its last answer.
poll() {
    local limit=$1 what=$2 filter=$3 deadline=$((SECONDS + $1)) out verdict last="no answer"
    while true; do
        if out=$(status_json); then
            verdict=$(jq -r "$filter" <<<"$out") || verdict="unreadable: $out"
            [[ $verdict == ok ]] && return 0
            last=$verdict
        fi
        ((SECONDS < deadline)) || fail "$what: not within ${limit}s (last: $last)"
        sleep 1
    done
}

# write PREFIX: sets PREFIX-1..PREFIX-$keys, each value naming its key.
write_keys() {
    local i
    for i in $(seq 1 "$keys"); do
        ctl set "$1-$i" "value of $1-$i" >/dev/null || fail "set $1-$i failed"
    done
}

# read_keys PREFIX [SKIP_OWNER]: every key reads back its value, except keys whose
# owner (as recorded in owners_PREFIX) is SKIP_OWNER; prints how many were checked.
read_keys() {
    local prefix=$1 skip=${2:-} i got n=0 owner
    for i in $(seq 1 "$keys"); do
        owner=$(owner_of "$prefix" "$i")
        if [[ -n $skip && $owner == "$skip" ]]; then
            continue
        fi
        got=$(ctl get "$prefix-$i") || fail "get $prefix-$i (owner node-$owner) failed or found nothing"
        [[ $got == "value of $prefix-$i" ]] || fail "get $prefix-$i returned \"$got\""
        n=$((n + 1))
    done
    echo "$n"
}

declare -A owners
# record_owners PREFIX: each key's owner now (`ringctl locate`).
record_owners() {
    local i
    for i in $(seq 1 "$keys"); do
        owners[$1-$i]=$(ctl locate "$1-$i" --json | jq -r '.replicas[0].id') \
            || fail "locate $1-$i failed"
    done
}
owner_of() { echo "${owners[$1-$2]}"; }
owner_counts() {
    local prefix=$1 i
    for i in $(seq 1 "$keys"); do owner_of "$prefix" "$i"; done | sort -n | uniq -c \
        | awk '{ printf "%snode-%s: %s", sep, $2, $1; sep = ", " } END { print "" }'
}

trap cleanup EXIT

if ((build)); then
    step="build"
    log "building the image: scripts/docker-build.sh ${build_args[*]:-}"
    "$root/scripts/docker-build.sh" "${build_args[@]}" 2>&1 | sed 's/^/    /'
    ((PIPESTATUS[0] == 0)) || fail "scripts/docker-build.sh failed"
fi

step="up"
log "fresh start: $RINGCACHE_PROJECT, state in $RINGCACHE_DOCKER_DIR"
"$cluster" down --volumes >/dev/null 2>&1 || true
rm -rf "$RINGCACHE_DOCKER_DIR"
"$cluster" up >"$RINGCACHE_DOCKER_DIR.up.log" 2>&1 || {
    cat "$RINGCACHE_DOCKER_DIR.up.log" >&2
    rm -f "$RINGCACHE_DOCKER_DIR.up.log"
    fail "docker-cluster.sh up failed"
}
rm -f "$RINGCACHE_DOCKER_DIR.up.log"
log "3 nodes active members after $((SECONDS - started))s"
"$cluster" wait --settled >/dev/null || fail "the initial partition moves did not finish"
log "initial partition moves done; members:"
status_json | jq -r '.members[] | "      node-\(.id) \(.addr) \(.state) \(.role) primaries=\(.primaries)"'

step="set/get"
write_keys before
record_owners before
read=$(read_keys before)
log "set and got $read/$keys keys from the host (owners: $(owner_counts before))"
for n in 1 2 3; do
    [[ $(owner_counts before) == *"node-$n:"* ]] \
        || fail "no key landed on node-$n: routing to every node is not exercised"
done

step="kill node-$victim"
docker kill "$victim_container" >/dev/null || fail "docker kill $victim_container failed"
log "docker kill $victim_container"
poll 60 "node-$victim marked down" \
    "if (.members[] | select(.id == $victim) | .state) == \"down\" then \"ok\" else
       \"node-$victim is \" + (.members[] | select(.id == $victim) | .state) end"
log "node-$victim shows as down"
poll 60 "the other nodes own every partition" \
    "[.members[] | select(.id != $victim and (.state != \"active\" or .health != \"ok\"))] as \$bad
     | if (\$bad | length) > 0 then \"not serving: \" + ([\$bad[] | \"node-\(.id)\"] | join(\",\"))
       elif ([.members[] | select(.id == $victim) | .primaries] | add) > 0 then \"node-$victim still owns partitions\"
       elif (.moves | length) > 0 then \"moves in progress\" else \"ok\" end"
read=$(read_keys before "$victim")
lost=$((keys - read))
log "cluster serves without node-$victim: $read earlier keys on the others read back ($lost were on node-$victim: gone, no replication yet)"
write_keys during
record_owners during
read=$(read_keys during)
log "wrote and read $read/$keys new keys while node-$victim is down (owners: $(owner_counts during))"
ctl cluster status | sed 's/^/      /'

step="restart node-$victim"
docker start "$victim_container" >/dev/null || fail "docker start $victim_container failed"
log "docker start $victim_container"
"$cluster" wait --settled >/dev/null || fail "node-$victim did not become active again"
log "node-$victim active again; all 3 serving, no moves in progress"
record_owners during
read=$(read_keys during)
log "all $read/$keys keys written while it was down read back (owners now: $(owner_counts during))"
[[ $(owner_counts during) == *"node-$victim:"* ]] \
    || fail "node-$victim owns none of the keys: it did not get its share back"
read=$(read_keys before "$victim")
log "$read earlier keys still read back"

step="healthchecks"
deadline=$((SECONDS + 60))
while true; do
    health=$(for n in 1 2 3; do
        docker inspect -f '{{.Name}}={{.State.Health.Status}}' "$RINGCACHE_PROJECT-node-$n"
    done | sed 's|^/||' | paste -sd' ')
    [[ $health != *starting* && $health != *unhealthy* ]] && break
    ((SECONDS < deadline)) || fail "containers not healthy within 60s: $health"
    sleep 1
done
[[ $health == *=healthy*=healthy*=healthy* ]] || fail "containers not healthy: $health"
log "docker healthchecks: $health"
ctl cluster status | sed 's/^/      /'

step="down"
