# The AWS Distro for OpenTelemetry collector (`observability.traces: xray`),
# rendered into templates/executor-user-data.sh: the executor sends its
# traces over OTLP/HTTP to the host's loopback (port 4318), and the collector
# sends them to X-Ray with the instance role. Its log stream is the host's
# name with its own suffix, in the executors' log group. Traces are not
# essential: a collector that cannot be pulled or started leaves the host
# running its executor without them.
for attempt in 1 2 3 4 5; do
  docker rm --force '{{collector_name}}' >/dev/null 2>&1 || true
  if docker run --detach --name '{{collector_name}}' --restart always \
    --network host \
    --env AWS_REGION='{{region}}' \
    --ulimit nofile=65536:65536 \
    --log-driver awslogs \
    --log-opt awslogs-region='{{region}}' \
    --log-opt awslogs-group='{{log_group}}' \
    --log-opt awslogs-stream="$(hostname)-{{collector_name}}" \
    '{{collector_image}}' '{{collector_config}}'; then
    break
  fi
  if [ "$attempt" = 5 ]; then
    echo "the OpenTelemetry collector did not start: this host sends no traces" >&2
  else
    sleep 5
  fi
done
