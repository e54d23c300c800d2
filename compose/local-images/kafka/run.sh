#!/bin/sh
# As apache/kafka's entrypoint: every KAFKA_* variable but the JVM's becomes a line of
# server.properties (KAFKA_ stripped, lower case, _ to ., __ to _, ___ to -); CLUSTER_ID formats
# the storage once; then the broker.
set -eu
: "${CLUSTER_ID:?CLUSTER_ID is required}"
conf=/var/lib/kafka/server.properties
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JMX_OPTS | KAFKA_LOG4J_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_GC_LOG_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
  printf '%s=%s\n' "$key" "$value"
done > "$conf"
grep -q '^log\.dirs=' "$conf" || echo "log.dirs=/var/lib/kafka/data" >> "$conf"
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" --config "$conf" >/dev/null
# shellcheck disable=SC2086 # the options are lists of words, as in kafka-run-class.sh
exec java ${KAFKA_HEAP_OPTS:--Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties ${KAFKA_OPTS:-} \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$conf"
