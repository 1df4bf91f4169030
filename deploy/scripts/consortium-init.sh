#!/usr/bin/env bash
# A whole consortium on one trusted machine (tests, compose, a lab), made the way members
# across machines make it (member-init.sh on each member, ca-sign.sh at the CA operator):
# every node home makes its own keys and certificate request, the CA signs the requests,
# genesis is built from the public member files.
#
#   consortium-init.sh OUT_DIR CHAIN_ID HOST [HOST...]
#
# Member i gets the id node<i> (override with MDTP_IDS="acme beta ...") and advertises
# HOST_i:26600 (p2p) and HOST_i:26601 (API) in genesis. Its config listens on those
# addresses too; in containers set MDTP_P2P_LISTEN=0.0.0.0:26600 and
# MDTP_API_LISTEN=0.0.0.0:26601 (the compose file and the StatefulSets do). The metrics port
# listens on ${MDTP_METRICS_HOST:-0.0.0.0}:26602.
#
# Result: OUT_DIR/<id>/, a node home each holding only what the daemon reads (config.toml,
# genesis.json, node_key.json, node.key.pem, node.pem, ca.pem, data/); OUT_DIR/ca (keep
# ca.key.pem offline; encrypted with MDTP_CA_PASSPHRASE_FILE's first line if that is set);
# OUT_DIR/admins/<id>/admin_key.json (each member's admin key: never on a node);
# OUT_DIR/requests/<id>/ (node.csr.pem, member.json, node.pem); OUT_DIR/genesis.json.
# Ports: MDTP_P2P_PORT, MDTP_API_PORT, MDTP_METRICS_PORT (26600, 26601, 26602).
set -euo pipefail
if [ "$#" -lt 3 ]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
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
pass=()
if [ -n "${MDTP_CA_PASSPHRASE_FILE:-}" ]; then pass=(--passphrase-file "$MDTP_CA_PASSPHRASE_FILE"); fi
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
"$MDTP" ca init --out "$out/ca" --name "$chain_id" "${pass[@]}" >/dev/null
members=() certs=()
for i in "${!hosts[@]}"; do
    id=${ids[$i]} host=${hosts[$i]}
    req=$out/requests/$id
    # the member's side: keys and a request (the admin key and the request outside the home)
    "$MDTP" init --home "$out/$id" --id "$id" \
        --admin-out "$out/admins/$id" --request-out "$req" \
        --p2p "$host:$p2p_port" --api "$host:$api_port" \
        --metrics "$metrics_host:$metrics_port" >/dev/null
    # the CA operator's side: sign the request (it never sees a private key)
    "$MDTP" ca sign "$req/node.csr.pem" --ca "$out/ca" --out "$req/node.pem" "${pass[@]}" >/dev/null
    members+=("$req/member.json") certs+=(--cert "$req/node.pem")
done
"$MDTP" genesis build --chain-id "$chain_id" --out "$out/genesis.json" \
    --ca-cert "$out/ca/ca.pem" "${certs[@]}" "${members[@]}"
for id in "${ids[@]}"; do
    # back on the member's side: its certificate, the CA certificate and genesis, checked
    "$MDTP" install-cert --home "$out/$id" --cert "$out/requests/$id/node.pem" \
        --ca-cert "$out/ca/ca.pem" --genesis "$out/genesis.json" >/dev/null
done
echo "node homes: ${ids[*]/#/$out/}"
