#!/usr/bin/env bash
# Run by each member on its own machine: the node's keys and its certificate request.
#
#   member-init.sh HOME ID HOST
#
# Writes HOME, the node home (config.toml, node_key.json, node.key.pem, data/); the member's
# admin account key in HOME-admin/admin_key.json (keep it off the node: the daemon never
# reads it); and HOME-request/node.csr.pem + HOME-request/member.json, the public request to
# send to the consortium's CA operator. The node advertises HOST:26600 (p2p) and HOST:26601
# (API); more names for its certificate with MDTP_HOSTS="alt.example 10.0.0.7". Ports:
# MDTP_P2P_PORT, MDTP_API_PORT, MDTP_METRICS_PORT (26600, 26601, 26602); metrics listen on
# ${MDTP_METRICS_HOST:-0.0.0.0}. MDTP_KEY_PASSPHRASE seals the node and admin keys.
#
# The CA operator (deploy/scripts/ca-sign.sh) sends back node.pem, ca.pem and genesis.json:
#   mdtp install-cert --home HOME --cert node.pem --ca-cert ca.pem --genesis genesis.json
set -euo pipefail
if [ "$#" -ne 3 ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
home=$1 id=$2 host=$3
MDTP=${MDTP:-mdtp}
read -r -a extra <<<"${MDTP_HOSTS:-}"
hosts=()
if [ "${#extra[@]}" -gt 0 ]; then hosts=(--hosts "${extra[@]}"); fi
"$MDTP" init --home "$home" --id "$id" \
    --p2p "$host:${MDTP_P2P_PORT:-26600}" --api "$host:${MDTP_API_PORT:-26601}" \
    --metrics "${MDTP_METRICS_HOST:-0.0.0.0}:${MDTP_METRICS_PORT:-26602}" "${hosts[@]}"
