#!/usr/bin/env bash
# Creates the consortium CA and one node home per member for a deployment where every
# member is reached by a host name (a compose service, a Kubernetes Service, a DNS name).
#
#   consortium-init.sh OUT_DIR CHAIN_ID HOST [HOST...]
#
# Member i gets the id node<i> (override with MDTP_IDS="acme beta ...") and advertises
# HOST_i:26600 (p2p) and HOST_i:26601 (API) in genesis. Its config listens on those
# addresses too; in containers set MDTP_P2P_LISTEN=0.0.0.0:26600 and
# MDTP_API_LISTEN=0.0.0.0:26601 (the compose file and the StatefulSets do). The metrics port
# listens on ${MDTP_METRICS_HOST:-0.0.0.0}:26602.
#
# Result: OUT_DIR/ca (keep ca.key.pem offline), OUT_DIR/genesis.json and OUT_DIR/<id>/ (a
# complete node home each, genesis.json included). Ports: MDTP_P2P_PORT, MDTP_API_PORT,
# MDTP_METRICS_PORT (26600, 26601, 26602).
set -euo pipefail
if [ "$#" -lt 3 ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
out=$1 chain_id=$2
shift 2
hosts=("$@")
MDTP=${MDTP:-mdtp}
p2p_port=${MDTP_P2P_PORT:-26600}
api_port=${MDTP_API_PORT:-26601}
metrics_port=${MDTP_METRICS_PORT:-26602}
metrics_host=${MDTP_METRICS_HOST:-0.0.0.0}
read -r -a ids <<<"${MDTP_IDS:-}"
if [ "${#ids[@]}" -eq 0 ]; then
    for i in "${!hosts[@]}"; do ids+=("node$i"); done
fi
if [ "${#ids[@]}" -ne "${#hosts[@]}" ]; then
    echo "MDTP_IDS names ${#ids[@]} members but ${#hosts[@]} hosts were given" >&2
    exit 2
fi
if [ -e "$out/genesis.json" ]; then
    echo "$out already holds a consortium (genesis.json exists); remove it first" >&2
    exit 2
fi
mkdir -p "$out"
"$MDTP" ca init --dir "$out/ca" --name "$chain_id"
members=()
for i in "${!hosts[@]}"; do
    id=${ids[$i]} host=${hosts[$i]}
    "$MDTP" init --home "$out/$id" --id "$id" --ca-dir "$out/ca" \
        --p2p "$host:$p2p_port" --api "$host:$api_port" \
        --metrics "$metrics_host:$metrics_port" >/dev/null
    members+=("$out/$id/member.json")
done
"$MDTP" genesis build --chain-id "$chain_id" --out "$out/genesis.json" "${members[@]}"
for id in "${ids[@]}"; do
    cp "$out/genesis.json" "$out/$id/genesis.json"
done
echo "node homes: ${ids[*]/#/$out/}"
