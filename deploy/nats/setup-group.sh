#!/usr/bin/env bash
# Create the stream, the partition consumers and the KV buckets of an edgewatch consumer group on a NATS
# JetStream cluster (deploy/nats/cluster.conf), as the admin user. Run once; then start the workers.
#   NATS_URLS="nats://core1:4222,nats://core2:4222,nats://core3:4222" EW_ADMIN_PASSWORD=... ./setup-group.sh
# Partitions are fixed for the group's life: choose at least the most workers you will run (16 by default).
set -euo pipefail
GROUP=${GROUP:-edgewatch}
PARTITIONS=${PARTITIONS:-16}
: "${NATS_URLS:?set NATS_URLS to the client URLs of the cluster}"
: "${EW_ADMIN_PASSWORD:?set EW_ADMIN_PASSWORD}"
pw=$(mktemp); trap 'rm -f "$pw"' EXIT; printf '%s\n' "$EW_ADMIN_PASSWORD" > "$pw"
export EDGEWATCH_NATS_NATS_USER=admin EDGEWATCH_NATS_NATS_PASSWORD_FILE="$pw" EDGEWATCH_CONFIG=""
edgewatch group create "$GROUP" --servers "$NATS_URLS" --stream EDGEWATCH --subject 'sensors.*.data' \
  --partitions "$PARTITIONS" --replicas 3 --alert-subject 'alerts.*'
edgewatch group status "$GROUP" --servers "$NATS_URLS"
