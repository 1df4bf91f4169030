#!/usr/bin/env bash
# Creates (or updates) the genesis ConfigMap and one Secret per member in namespace mdtp
# from node homes (HOMES/<id>, each made by `mdtp init` + `mdtp install-cert --genesis`, see
# deploy/scripts/member-init.sh, or all at once by deploy/scripts/consortium-init.sh) and
# HOMES/genesis.json:
#
#   deploy/scripts/consortium-init.sh homes my-chain node0 node1 node2 node3
#   deploy/k8s/create-secrets.sh homes node0 node1 node2 node3
#
# A member running its own node passes only its own id. A Secret holds only what the daemon
# reads (config.toml, ca.pem, node.pem, node.key.pem, node_key.json): never an admin key or
# the CA's key. With DRY_RUN=1 it prints the manifests instead of applying them.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
homes=$1
shift
KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=${NAMESPACE:-mdtp}
apply() {
    if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "---"
        cat
    else
        "$KUBECTL" apply -f -
    fi
}
"$KUBECTL" create configmap mdtp-genesis --namespace "$NAMESPACE" \
    --from-file=genesis.json="$homes/genesis.json" --dry-run=client -o yaml | apply
for id in "$@"; do
    h=$homes/$id
    files=()
    for f in config.toml ca.pem node.pem node.key.pem node_key.json; do
        if [ ! -f "$h/$f" ]; then
            echo "$h/$f missing: finish the home first (mdtp install-cert --home $h ...)" >&2
            exit 2
        fi
        files+=(--from-file="$f=$h/$f")
    done
    "$KUBECTL" create secret generic "mdtp-$id" --namespace "$NAMESPACE" "${files[@]}" \
        --dry-run=client -o yaml | apply
done
