#!/usr/bin/env bash
# Creates (or updates) the genesis ConfigMap and one Secret per member in namespace mdtp
# from the node homes written by deploy/scripts/consortium-init.sh:
#
#   deploy/scripts/consortium-init.sh homes my-chain node0 node1 node2 node3
#   deploy/k8s/create-secrets.sh homes node0 node1 node2 node3
#
# With DRY_RUN=1 it prints the manifests instead of applying them.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
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
    "$KUBECTL" create secret generic "mdtp-$id" --namespace "$NAMESPACE" \
        --from-file=config.toml="$h/config.toml" --from-file=ca.pem="$h/ca.pem" \
        --from-file=node.pem="$h/node.pem" --from-file=node.key.pem="$h/node.key.pem" \
        --from-file=node_key.json="$h/node_key.json" \
        --from-file=admin_key.json="$h/admin_key.json" \
        --dry-run=client -o yaml | apply
done
