#!/bin/bash
# Boot script of a stackctl executor host (EC2 user data on Amazon Linux
# 2023), rendered from templates/executor-user-data.sh by stacks::graph.
# It installs Docker, pulls the engine image and runs the executor role, with
# the host's Docker socket only when the spec enables the `docker` step
# driver.
set -euo pipefail

dnf install -y docker
systemctl enable --now docker

install -d -m 0700 /etc/stackctl
# Quoted heredoc: the environment is written exactly as rendered.
cat > /etc/stackctl/engine.env <<'STACKCTL_ENV'
{{engine_env}}
STACKCTL_ENV
chmod 0600 /etc/stackctl/engine.env

# Secrets the engine reads from the stack's SSM SecureString parameters (the
# event keys, the runs-API token, the Redis auth token), fetched with the
# instance role so that they never appear in the launch template. Retried: the role's credentials can lag behind boot.
engine_secret() { # engine_secret VARIABLE PARAMETER
  local value attempt
  for attempt in 1 2 3 4 5; do
    if value="$(aws ssm get-parameter --region '{{region}}' --name "$2" \
      --with-decryption --query Parameter.Value --output text)"; then
      printf '%s=%s\n' "$1" "$value" >> /etc/stackctl/engine.env
      return 0
    fi
    sleep 5
  done
  echo "cannot read SSM parameter $2" >&2
  return 1
}
{{secret_env}}{{otel_collector}}

IMAGE='{{image}}'
REGISTRY="$(echo "$IMAGE" | cut -d/ -f1)"
if echo "$REGISTRY" | grep -q '\.dkr\.ecr\.'; then
  aws ecr get-login-password --region '{{region}}' \
    | docker login --username AWS --password-stdin "$REGISTRY"
fi

# Retried: the instance role's credentials can lag a few seconds behind boot.
for attempt in 1 2 3 4 5; do
  docker pull "$IMAGE" && break
  [ "$attempt" = 5 ] && exit 1
  sleep 5
done

docker rm --force stackctl-executor >/dev/null 2>&1 || true
# --stop-timeout: on shutdown (an instance refresh, a scale-in) the executor
# stops leasing and finishes the steps it holds before Docker kills it.
# --network host: the instance metadata service answers one hop only
# (the launch template's hop limit 1), so the executor reaches the instance
# role's credentials and the containers of docker steps (on Docker's bridge)
# do not.
docker run --detach --name stackctl-executor --restart always \
  --stop-timeout 30 \
  --network host \
  --env-file /etc/stackctl/engine.env \
  --env AWS_REGION='{{region}}' \
  --env STACKCTL_ENGINE_EXECUTOR_HOST="$(hostname)" \
  {{docker_socket}} \
  --ulimit nofile=65536:65536 \
  --log-driver awslogs \
  --log-opt awslogs-region='{{region}}' \
  --log-opt awslogs-group='{{log_group}}' \
  --log-opt awslogs-stream="$(hostname)" \
  "$IMAGE" --role executor
