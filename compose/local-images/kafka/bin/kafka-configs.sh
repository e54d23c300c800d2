#!/bin/sh
# As Kafka's own kafka-configs.sh: the tool's class on the broker's classpath, logging only errors.
exec java -Xmx256m -Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties -cp '/opt/kafka/libs/*' kafka.admin.ConfigCommand "$@"
