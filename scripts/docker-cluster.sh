#!/usr/bin/env bash
# A Ringcache cluster in Docker (docker/compose.yaml): node-1 bootstraps, the others join
# through it; each node in its own container with a fixed address on a private network,
# its data in a named volume, its certificate pair mounted read-only.
#
#   scripts/docker-cluster.sh gen            certificates (ringctl certs init, once) and
#                                            node configs in the state dir, nothing started
#   scripts/docker-cluster.sh up             gen, docker-compose up -d, wait until serving
#   scripts/docker-cluster.sh status         containers and `ringctl cluster status`
#   scripts/docker-cluster.sh wait [--settled]   wait until every node is an active member
#                                            that answers (--settled: and no partition
#                                            moves are in progress)
#   scripts/docker-cluster.sh add            one more node (4, 5, ...) joins; waits
#   scripts/docker-cluster.sh ctl ARGS...    ringctl -c <state dir>/client.toml ARGS...
#   scripts/docker-cluster.sh down [--volumes]   stop and remove the containers (and
#                                            with --volumes the data; configs and
#                                            certificates stay in the state dir)
#
# Environment (defaults in brackets):
#   RINGCACHE_DOCKER_DIR [.ringcache/docker]  state: certs/ (the whole bundle, CA key
#                        included: it never leaves the host), node-<id>/ (what node <id>
#                        mounts), client.toml, compose.extra.yaml (nodes from `add`)
#   RINGCACHE_PROJECT [ringcache]   compose project and container name prefix
#   RINGCACHE_IMAGE [ringcache:latest]   built by scripts/docker-build.sh
#   RINGCACHE_NET [172.28.7]        network <NET>.0/24; node N at <NET>.(10+N)
#   RINGCACHE_PORT_BASE [7700]      node N published on 127.0.0.1:(BASE+N)/udp
#   RINGCACHE_CERT_NODES [5]        node certificates issued at the start (ringctl can
#                                   only issue them with a new CA: spares are for `add`)
#   RINGCACHE_MEMORY [128MiB]       the default namespace's memory per node
#   RINGCACHE_WAIT [120]            seconds `up`, `wait` and `add` wait at most
#   RINGCTL                         the ringctl to run on the host [target/release/ringctl
#                                   ($CARGO_TARGET_DIR), else ringctl on PATH, else the
#                                   image's, in a container on the host network]
# Needs docker, docker-compose (or the compose plugin) and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { echo "docker-cluster: $*" >&2; exit 1; }
say() { echo "==> $*"; }

state=${RINGCACHE_DOCKER_DIR:-$root/.ringcache/docker}
mkdir -p "$state"
state=$(cd "$state" && pwd)
project=${RINGCACHE_PROJECT:-ringcache}
image=${RINGCACHE_IMAGE:-ringcache:latest}
net=${RINGCACHE_NET:-172.28.7}
port_base=${RINGCACHE_PORT_BASE:-7700}
cert_nodes=${RINGCACHE_CERT_NODES:-5}
memory=${RINGCACHE_MEMORY:-128MiB}
wait_secs=${RINGCACHE_WAIT:-120}
domain=ringcache.local
compose_file=$root/docker/compose.yaml
extra_file=$state/compose.extra.yaml
client_toml=$state/client.toml
# Nodes defined in docker/compose.yaml; `add` appends the rest to compose.extra.yaml.
base_nodes=3

# The uid the nodes run as must read their 0600 key: the owner of the generated files.
# As root, the files are given to uid 10001 instead, so no node runs as root.
if [[ $(id -u) == 0 ]]; then
    run_uid=${RINGCACHE_UID:-10001}
    run_gid=${RINGCACHE_GID:-10001}
else
    run_uid=${RINGCACHE_UID:-$(id -u)}
    run_gid=${RINGCACHE_GID:-$(id -g)}
fi

export RINGCACHE_IMAGE=$image RINGCACHE_PROJECT=$project RINGCACHE_DOCKER_DIR=$state \
    RINGCACHE_NET=$net RINGCACHE_UID=$run_uid RINGCACHE_GID=$run_gid
for i in 1 2 3; do
    export "RINGCACHE_PORT_$i=$((port_base + i))"
done

command -v docker >/dev/null || die "docker is not installed"
command -v jq >/dev/null || die "jq is needed to read \`ringctl --json\` output"
if command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    die "neither docker-compose nor the docker compose plugin is installed"
fi

compose() {
    local files=(-f "$compose_file")
    [[ -f $extra_file ]] && files+=(-f "$extra_file")
    "${compose_cmd[@]}" -p "$project" --project-directory "$root/docker" "${files[@]}" "$@"
}

ringctl_bin() {
    if [[ -n ${RINGCTL:-} ]]; then
        echo "$RINGCTL"
    elif [[ -x ${CARGO_TARGET_DIR:-$root/target}/release/ringctl ]]; then
        echo "${CARGO_TARGET_DIR:-$root/target}/release/ringctl"
    elif command -v ringctl >/dev/null; then
        command -v ringctl
    fi
}

# ringctl on the host, with the cluster's client config.
ctl() {
    local bin
    bin=$(ringctl_bin)
    if [[ -n $bin ]]; then
        "$bin" -c "$client_toml" "$@"
    else
        # No ringctl here: the image's, on the host's network, as the files' owner.
        docker run --rm --network host --user "$(id -u):$(id -g)" \
            -v "$state:$state:ro" --entrypoint ringctl "$image" -c "$client_toml" "$@"
    fi
}

node_ids() {
    local ids=() d
    for d in "$state"/node-*/; do
        [[ -f $d/ringcached.toml ]] && ids+=("$(basename "$d" | sed 's/^node-//')")
    done
    printf '%s\n' "${ids[@]}" | sort -n
}

# Certificates: the bundle is made once (ringctl certs init refuses to overwrite) and
# reused; node N's directory gets the CA certificate and node N's pair only.
ensure_certs() {
    if [[ -f $state/certs/ca.pem ]]; then
        return
    fi
    say "ringctl certs init: CA, node-1..node-$cert_nodes, client admin in $state/certs"
    local bin
    bin=$(ringctl_bin)
    if [[ -n $bin ]]; then
        "$bin" certs init --dir "$state/certs" --nodes "$cert_nodes" --client admin \
            --domain "$domain" >/dev/null
    else
        docker run --rm --network none --user "$(id -u):$(id -g)" -v "$state:/state" \
            --entrypoint ringctl "$image" certs init --dir /state/certs \
            --nodes "$cert_nodes" --client admin --domain "$domain" >/dev/null
    fi
}

# Writes node <id>'s directory: ringcached.toml, ca.pem, node.pem, node.key.
write_node() {
    local id=$1 seeds=$2 dir=$state/node-$1
    [[ -f $state/certs/node-$id.pem ]] || die "no certificate for node-$id in $state/certs: \
ringctl issues node certificates only with \`certs init\` (a new CA); remove $state and \
run again with RINGCACHE_CERT_NODES=$id or more (see docs/docker.md)"
    mkdir -p "$dir"
    chmod 0700 "$dir"
    install -m 0644 "$state/certs/ca.pem" "$dir/ca.pem"
    install -m 0644 "$state/certs/node-$id.pem" "$dir/node.pem"
    install -m 0600 "$state/certs/node-$id.key" "$dir/node.key"
    if [[ -f $dir/ringcached.toml ]] && ! head -1 "$dir/ringcached.toml" | grep -qF "$marker"; then
        echo "    node-$id/ringcached.toml has no \"$marker\" first line: kept as it is"
    else
        write_node_config "$id" "$seeds" >"$dir/ringcached.toml"
    fi
    chmod 0644 "$dir/ringcached.toml"
    if [[ $(id -u) == 0 ]]; then
        chown -R "$run_uid:$run_gid" "$dir"
    fi
}

# The first line of every config this script writes; a config without it (edited, with
# that line removed) is left alone by gen and up.
marker="# Written by scripts/docker-cluster.sh"

write_node_config() {
    local id=$1 seeds=$2
    {
        echo "$marker for node $id (rewritten by gen/up; delete this"
        echo "# line to keep your edits). Paths are inside the container. Every field:"
        echo "# crates/node/src/config.rs; [cluster]: docs/cluster.md."
        echo "node_id = $id"
        echo 'listen = "0.0.0.0:7700"'
        echo 'data_dir = "/var/lib/ringcache"'
        echo
        echo '[tls]'
        echo 'ca = "/etc/ringcache/ca.pem"'
        echo 'cert = "/etc/ringcache/node.pem"'
        echo 'key = "/etc/ringcache/node.key"'
        echo "cluster_domain = \"$domain\""
        echo
        echo '[namespaces.default]'
        echo "memory = \"$memory\""
        echo
        echo '[cluster]'
        echo "# The fixed address on the compose network: the host reaches it too (Linux),"
        echo "# so clients on the host can route to every node."
        echo "advertise = \"$net.$((10 + id)):7700\""
        if [[ $id == 1 ]]; then
            echo 'bootstrap = true'
        else
            echo "seeds = [$seeds]"
        fi
    }
}

write_client() {
    local endpoints=() id
    for id in $(node_ids); do
        endpoints+=("\"127.0.0.1:$((port_base + id))\"")
    done
    {
        echo "# Written by scripts/docker-cluster.sh: the nodes' published ports; paths are"
        echo "# relative to this file. Use: ringctl -c $client_toml cluster status"
        echo "endpoints = [$(IFS=,; echo "${endpoints[*]}" | sed 's/,/, /g')]"
        echo 'ca_cert = "certs/ca.pem"'
        echo 'client_cert = "certs/client-admin.pem"'
        echo 'client_key = "certs/client-admin.key"'
        echo "cluster_domain = \"$domain\""
    } >"$client_toml"
}

gen() {
    ensure_certs
    local id
    for id in $(seq 1 "$base_nodes"); do
        write_node "$id" '"node-1:7700"'
    done
    # Nodes `add` made keep their configs (their seeds named the members of the time).
    for id in $(node_ids); do
        if ((id > base_nodes)); then
            write_node "$id" "$(seeds_for "$id")"
        fi
    done
    write_client
}

seeds_for() {
    local id=$1 s=() n
    for n in $(node_ids); do
        ((n < id)) && s+=("\"node-$n:7700\"")
    done
    (IFS=,; echo "${s[*]}" | sed 's/,/, /g')
}

# Prints "ok" when every id in $1 (space-separated) is an active member that answers and
# a leader and a table exist (and with $2 = settled, no partition is moving); else what
# is missing.
readiness() {
    jq -r --arg want "$1" --arg settled "${2:-}" '
      ($want | split(" ") | map(tonumber)) as $want
      | [.members[] | select(.state == "active" and .health == "ok") | .id] as $ok
      | ($want - $ok) as $missing
      | if .leader == null then "no leader yet"
        elif .epoch == 0 then "no partition table yet"
        elif ($missing | length) > 0 then
          "not active and answering yet: " + ([$missing[] as $m
            | ((.members[] | select(.id == $m) | "node-\(.id) \(.state)/\(.health)")
               // "node-\($m) not a member")] | join(", "))
        elif $settled == "settled" and (.moves | length) > 0 then
          "\(.moves | length) partition moves in progress"
        else "ok" end'
}

# wait_serving "1 2 3" [settled]: polls `ringctl cluster status --json` until readiness
# says ok.
wait_serving() {
    local want=$1 settled=${2:-} deadline=$((SECONDS + wait_secs)) out verdict last="no answer yet"
    while true; do
        if out=$(ctl --timeout 2s cluster status --json 2>&1); then
            verdict=$(readiness "$want" "$settled" <<<"$out" 2>&1) || verdict="unreadable status: $out"
            if [[ $verdict == ok ]]; then
                return 0
            fi
            last=$verdict
        else
            last=${out##*$'\n'}
        fi
        if ((SECONDS >= deadline)); then
            echo "docker-cluster: the cluster did not serve within ${wait_secs}s: $last" >&2
            echo "docker-cluster: container logs: docker logs $project-node-<id>" >&2
            return 1
        fi
        sleep 1
    done
}

all_ids() { node_ids | tr '\n' ' ' | sed 's/ $//'; }

moves_note() {
    local n
    n=$(ctl cluster status --json 2>/dev/null | jq '.moves | length' 2>/dev/null) || return 0
    if [[ $n != 0 ]]; then
        say "serving; partition moves to balance the members continue in the background"
        echo "    ($n in progress now; \`$0 wait --settled\` waits for them, \`ringctl cluster moves\` shows them)"
    fi
}

hint() {
    local bin
    bin=$(ringctl_bin)
    if [[ -z $bin ]]; then
        cat <<EOF

No ringctl on this machine (build it, or set RINGCTL): use the image's through
  $0 ctl cluster status
  $0 ctl set greeting hello
Logs: docker logs -f $project-node-1    Stop: $0 down [--volumes]
EOF
        return
    fi
    cat <<EOF

Connect from this machine (nodes on 127.0.0.1:$((port_base + 1))..; routed requests go
to each node's own address $net.1x, reachable from the host on Linux):
  $bin -c $client_toml cluster status
  $bin -c $client_toml set greeting hello
  $bin -c $client_toml get greeting
  export RINGCACHE_CONFIG=$client_toml   # then plain \`ringctl ...\`
Logs: docker logs -f $project-node-1    Stop: $0 down [--volumes]
EOF
}

cmd=${1:-}
[[ -n $cmd ]] && shift
case $cmd in
    gen)
        gen
        say "configs in $state (node-<id>/, client.toml)"
        ;;
    up)
        docker image inspect "$image" >/dev/null 2>&1 \
            || die "no image $image: build it with scripts/docker-build.sh"
        gen
        say "docker-compose up -d ($project, network $net.0/24)"
        compose up -d --no-build
        say "waiting for nodes $(all_ids) to be active members (at most ${wait_secs}s)"
        wait_serving "$(all_ids)"
        ctl cluster status
        moves_note
        hint
        ;;
    wait)
        settled=
        case ${1:-} in
            --settled) settled=settled ;;
            "") ;;
            *) die "wait: unknown argument $1 (--settled also waits for partition moves)" ;;
        esac
        wait_serving "$(all_ids)" "$settled"
        say "serving${settled:+, no partition moves in progress}"
        ;;
    status)
        compose ps
        echo
        ctl cluster status
        ;;
    add)
        [[ -f $client_toml ]] || die "no cluster in $state: run up first"
        last=$(node_ids | tail -1)
        id=$((last + 1))
        ((id <= 250)) || die "node ids above 250 do not fit $net.0/24"
        say "adding node-$id at $net.$((10 + id)), published on 127.0.0.1:$((port_base + id))"
        write_node "$id" "$(seeds_for "$id")"
        # One service block per added node in services.d/; compose.extra.yaml is
        # regenerated from them (with docker/compose.yaml's x-node settings, since YAML
        # anchors do not reach across files).
        mkdir -p "$state/services.d"
        cat >"$state/services.d/node-$id.yaml" <<EOF
  node-$id:
    <<: *node
    container_name: \${RINGCACHE_PROJECT:-ringcache}-node-$id
    hostname: node-$id
    volumes:
      - $state/node-$id:/etc/ringcache:ro
      - node-$id-data:/var/lib/ringcache
    networks:
      ringcache:
        ipv4_address: $net.$((10 + id))
    ports:
      - "127.0.0.1:$((port_base + id)):7700/udp"
EOF
        {
            echo "# Nodes added by scripts/docker-cluster.sh add (generated; used together with"
            echo "# docker/compose.yaml, whose x-node settings are repeated here)."
            sed -n '/^x-node: &node/,/^services:/p' "$compose_file" | sed '$d'
            echo "services:"
            cat "$state"/services.d/node-*.yaml
            echo "volumes:"
            for f in "$state"/services.d/node-*.yaml; do
                echo "  $(basename "$f" .yaml)-data:"
            done
        } >"$extra_file"
        write_client
        compose up -d --no-build "node-$id"
        say "waiting for node-$id to join (at most ${wait_secs}s)"
        wait_serving "$(all_ids)"
        ctl cluster status
        moves_note
        ;;
    ctl)
        ctl "$@"
        ;;
    down)
        volumes=()
        case ${1:-} in
            --volumes|-v) volumes=(--volumes) ;;
            "") ;;
            *) die "down: unknown argument $1 (--volumes removes the data volumes)" ;;
        esac
        compose down --remove-orphans "${volumes[@]}"
        if [[ ${#volumes[@]} -gt 0 ]]; then
            # The data is gone: nodes from `add` would rejoin a cluster that no longer
            # knows them. Forget them; their certificates stay in certs/.
            rm -rf "$state/services.d" "$extra_file"
            for d in "$state"/node-*/; do
                id=$(basename "$d" | sed 's/^node-//')
                ((id > base_nodes)) && rm -rf "$d"
            done
            [[ -f $client_toml ]] && write_client
        fi
        ;;
    ""|-h|--help|help)
        sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        die "unknown command $cmd (gen, up, status, wait, add, ctl, down)"
        ;;
esac
