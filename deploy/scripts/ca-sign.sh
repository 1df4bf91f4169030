#!/usr/bin/env bash
# Run by the consortium's CA operator: signs the members' requests and builds genesis.
#
#   ca-sign.sh CA_DIR CHAIN_ID OUT REQUEST_DIR [REQUEST_DIR...]
#
# CA_DIR is the CA (`mdtp ca init --out CA_DIR --passphrase-file F`). Each REQUEST_DIR holds
# one member's node.csr.pem and member.json as the member sent them, in membership order.
# Each request is checked and signed (`mdtp ca sign`: exactly one mdtp://node/<id> URI, no
# client URI, no wildcard name, no CA request), then OUT/genesis.json is built from the
# member files and the certificates. Result, per member: OUT/<id>/node.pem, ca.pem and
# genesis.json, to send back. The CA key's passphrase: MDTP_CA_PASSPHRASE_FILE (a file) or
# MDTP_CA_PASSPHRASE_ENV (the name of a variable holding it). No private key of a member is
# read or needed.
set -euo pipefail
if [ "$#" -lt 4 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
ca=$1 chain_id=$2 out=$3
shift 3
MDTP=${MDTP:-mdtp}
pass=()
if [ -n "${MDTP_CA_PASSPHRASE_FILE:-}" ]; then pass=(--passphrase-file "$MDTP_CA_PASSPHRASE_FILE"); fi
if [ -n "${MDTP_CA_PASSPHRASE_ENV:-}" ]; then pass=(--passphrase-env "$MDTP_CA_PASSPHRASE_ENV"); fi
if [ -e "$out/genesis.json" ]; then
    echo "$out already holds a genesis (genesis.json exists); remove it first" >&2
    exit 2
fi
mkdir -p "$out"
members=() certs=() ids=()
for req in "$@"; do
    id=$("$MDTP" ca sign "$req/node.csr.pem" --ca "$ca" --out "$out/.cert.pem" --json "${pass[@]}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["node_id"])')
    mkdir -p "$out/$id"
    mv "$out/.cert.pem" "$out/$id/node.pem"
    cp "$ca/ca.pem" "$out/$id/ca.pem"
    members+=("$req/member.json") certs+=(--cert "$out/$id/node.pem") ids+=("$id")
done
"$MDTP" genesis build --chain-id "$chain_id" --out "$out/genesis.json" --ca-cert "$ca/ca.pem" \
    "${certs[@]}" "${members[@]}"
for id in "${ids[@]}"; do
    cp "$out/genesis.json" "$out/$id/genesis.json"
done
echo "send back to each member: ${ids[*]/#/$out/} (node.pem, ca.pem, genesis.json)"
