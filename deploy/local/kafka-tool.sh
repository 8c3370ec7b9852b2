#!/usr/bin/env bash
# Run a Kafka CLI class with the Kafka classpath cached by deploy/local/stack.sh
# (there is no Kafka distribution tarball here, only jars from Maven Central).
#
# Usage: deploy/local/kafka-tool.sh ALIAS|FULLY.QUALIFIED.Class [args...]
#   topics            org.apache.kafka.tools.TopicCommand
#   console-producer  org.apache.kafka.tools.ConsoleProducer
#   console-consumer  org.apache.kafka.tools.consumer.ConsoleConsumer
#   consumer-groups   org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
#   get-offsets       org.apache.kafka.tools.GetOffsetShell
#   delete-records    org.apache.kafka.tools.DeleteRecordsCommand
#   metadata-quorum   org.apache.kafka.tools.MetadataQuorumCommand
#   configs           kafka.admin.ConfigCommand
#   storage           kafka.tools.StorageTool
# Example: deploy/local/kafka-tool.sh topics --bootstrap-server 127.0.0.1:59092 --list
# Extra JVM options: GLV_KAFKA_TOOL_OPTS (word-split).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '5,/^set /{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2; exit 2; }

(($# >= 1)) || usage
case "$1" in
  topics) cls=org.apache.kafka.tools.TopicCommand ;;
  console-producer) cls=org.apache.kafka.tools.ConsoleProducer ;;
  console-consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  get-offsets) cls=org.apache.kafka.tools.GetOffsetShell ;;
  delete-records) cls=org.apache.kafka.tools.DeleteRecordsCommand ;;
  metadata-quorum) cls=org.apache.kafka.tools.MetadataQuorumCommand ;;
  configs) cls=kafka.admin.ConfigCommand ;;
  storage) cls=kafka.tools.StorageTool ;;
  -h | --help | help) usage ;;
  *.*) cls="$1" ;;
  *) usage ;;
esac
shift

# Fetches the jars on first use (progress on stderr), otherwise just prints the dir.
lib="$("$HERE/stack.sh" kafka-lib)"
read -r -a extra <<<"${GLV_KAFKA_TOOL_OPTS:-}"

# Small heap, C1 only, serial GC: these JVMs live for seconds, start fast instead.
exec java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  "-Dlog4j2.configurationFile=$HERE/kafka/tools-log4j2.properties" \
  "${extra[@]}" -cp "$lib/*" "$cls" "$@"
