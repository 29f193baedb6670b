# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # its constants and outputs are read by the scripts that source it; the sizing settings are theirs
# Shared by deploy.sh and deploy-storage.sh, the two scripts that deploy a
# function holding the model: the runtime, the model and its memory, the
# onnxruntime threads, the runtime environment and the build's, and the
# project's default compute service account. Source it after common.sh.
#
# Its functions read and set the caller's sizing settings (`model`, `memory`,
# `cpu`, `min_instances`, `max_instances`, `concurrency`, `timeout`,
# `max_upload_bytes`, `max_input_pixels`, `infer_threads`), which both
# scripts name alike.

RUNTIME=nodejs22

# Memory per model, from the peak RSS (VmHWM) of one 1024² inference measured
# with bench/ on 2 cores:
#   isnet-fp32   ~1.0-1.1 GB, ~1.15-1.3 GB with 4 12 MP images in flight -> 2Gi
#   isnet-fp16   ~1.25 GB -> 2Gi
#   isnet-uint8  ~0.95 GB -> 2Gi: 1Gi would leave no room for the upload, the
#                decoded image and its resized copies beside the model.
# The URL models have not been measured, so they get no default: pass --memory.
declare -A MODEL_MEMORY=([isnet-fp32]=2Gi [isnet-fp16]=2Gi [isnet-uint8]=2Gi)
# Cloud Run gives 2Gi only 1 CPU unless told otherwise; onnxruntime's intra-op
# threads make an inference close to twice as fast on 2.
DEFAULT_CPU=2
# The service stops a removal this much before the platform's timeout, so that it answers first.
REQUEST_DEADLINE_MARGIN_SECONDS=5

model_memory_table() {
  local name text=''
  for name in "${!MODEL_MEMORY[@]}"; do
    text+="${text:+, }$name ${MODEL_MEMORY[$name]}"
  done
  printf '%s' "$text"
}

# The registry is the one place model names and the default are written:
# sets REGISTRY_DEFAULT and REGISTRY_MODELS.
read_registry() {
  command -v node >/dev/null 2>&1 || fail "node is needed to read models/registry.json"
  local -a registry
  mapfile -t registry < <(node -e '
    const registry = require(process.argv[1]);
    console.log(registry.default);
    for (const model of registry.models) console.log(model.name);
  ' "$REPO_ROOT/models/registry.json")
  ((${#registry[@]} > 1)) || fail "could not read the models from models/registry.json"
  REGISTRY_DEFAULT=${registry[0]}
  REGISTRY_MODELS=("${registry[@]:1}")
}

# serving_settings: the sizing every function holding the model takes, from
# the environment, over the caller's DEFAULT_MIN_INSTANCES,
# DEFAULT_MAX_INSTANCES, DEFAULT_CONCURRENCY and DEFAULT_TIMEOUT.
serving_settings() {
  model=${MODEL:-$REGISTRY_DEFAULT}
  memory=${MEMORY:-}
  cpu=${CPU:-$DEFAULT_CPU}
  min_instances=${MIN_INSTANCES:-$DEFAULT_MIN_INSTANCES}
  max_instances=${MAX_INSTANCES:-$DEFAULT_MAX_INSTANCES}
  concurrency=${CONCURRENCY:-$DEFAULT_CONCURRENCY}
  timeout=${TIMEOUT:-$DEFAULT_TIMEOUT}
  max_upload_bytes=${MAX_UPLOAD_BYTES:-}
  max_input_pixels=${MAX_INPUT_PIXELS:-}
  infer_threads=${INFER_THREADS:-}
}

# serving_option ARG...: reads one of the sizing flags (setting OPTION_SHIFT),
# or returns 1 when ARG is none of them.
serving_option() {
  case $1 in
    --model | --model=*) option_value "$@" && model=$OPTION_VALUE ;;
    --memory | --memory=*) option_value "$@" && memory=$OPTION_VALUE ;;
    --cpu | --cpu=*) option_value "$@" && cpu=$OPTION_VALUE ;;
    --min-instances | --min-instances=*) option_value "$@" && min_instances=$OPTION_VALUE ;;
    --max-instances | --max-instances=*) option_value "$@" && max_instances=$OPTION_VALUE ;;
    --concurrency | --concurrency=*) option_value "$@" && concurrency=$OPTION_VALUE ;;
    --timeout | --timeout=*) option_value "$@" && timeout=$OPTION_VALUE ;;
    --max-upload-bytes | --max-upload-bytes=*) option_value "$@" && max_upload_bytes=$OPTION_VALUE ;;
    --max-input-pixels | --max-input-pixels=*) option_value "$@" && max_input_pixels=$OPTION_VALUE ;;
    --infer-threads | --infer-threads=*) option_value "$@" && infer_threads=$OPTION_VALUE ;;
    *) return 1 ;;
  esac
}

# check_model: `model` must be in the registry; an empty `memory` becomes the
# one measured for it, and a model never measured needs --memory.
check_model() {
  [[ " ${REGISTRY_MODELS[*]} " == *" $model "* ]] ||
    die "unknown model '$model' (models/registry.json has: ${REGISTRY_MODELS[*]})"
  if [[ -z $memory ]]; then
    memory=${MODEL_MEMORY[$model]:-}
    [[ -n $memory ]] || die "no measured memory for model $model: pass --memory (measure its peak RSS with bench/ first)"
  fi
}

# check_serving_settings FUNCTION MAX_TIMEOUT: the model, the numbers, then the tier.
check_serving_settings() {
  check_model
  check_integer min_instances 'min instances' 0 1000
  check_integer max_instances 'max instances' 1 1000
  ((min_instances <= max_instances)) ||
    die "min instances ($min_instances) must not exceed max instances ($max_instances)"
  check_integer concurrency concurrency 1 1000
  timeout=${timeout%s}
  # The service needs some of the timeout to answer its own 504 before the platform cuts it off.
  check_integer timeout 'timeout (seconds)' 10 "$2"
  [[ -z $max_upload_bytes ]] || check_integer max_upload_bytes MAX_UPLOAD_BYTES 1 999999999999
  [[ -z $max_input_pixels ]] || check_integer max_input_pixels MAX_INPUT_PIXELS 1 999999999999
  check_serving_tier "$1" "$concurrency"
}

# check_serving_tier FUNCTION CONCURRENCY: Cloud Run's rules for `memory` and
# `cpu`, then sets SERVING_MIB (`memory` in MiB, which the service budgets
# against), warns below the memory measured for `model`, and gives
# `infer_threads` the CPU count when it is unset.
check_serving_tier() {
  check_tier "$1" "$memory" "$cpu" "$2"
  SERVING_MIB=$MEMORY_MIB
  if [[ -n ${MODEL_MEMORY[$model]:-} ]]; then
    memory_mib "recommended memory" "${MODEL_MEMORY[$model]}"
    ((SERVING_MIB >= MEMORY_MIB)) ||
      note "warning: $memory is below the ${MODEL_MEMORY[$model]} measured to hold $model and one image; expect out-of-memory restarts"
  fi
  if [[ -z $infer_threads ]]; then
    cpu_millis CPU "$cpu"
    # The process may see the host's cores rather than the CPUs it is allotted.
    infer_threads=$(((CPU_MILLIS + 999) / 1000))
  fi
  check_integer infer_threads INFER_THREADS 1 64
}

# serving_env_entries TIMEOUT: sets ENV_ENTRIES to what every function holding
# the model runs with, the limits among them when given. glibc reads MALLOC_ARENA_MAX when the process starts,
# so it has to be in the runtime environment; the code cannot set it. Two
# malloc arenas instead of one per allocating thread (main, inference worker,
# libvips) lower the peak RSS with several removals in flight by about 50-80
# MiB (bench/NOTES.md). MEMORY_LIMIT_MB is --memory in MiB: admission budgets
# requests against it, since Cloud Run may not show the container's limit in
# the cgroup files.
serving_env_entries() {
  ENV_ENTRIES=(
    "MODEL=$model" "INFER_THREADS=$infer_threads"
    "REQUEST_TIMEOUT_MS=$((($1 - REQUEST_DEADLINE_MARGIN_SECONDS) * 1000))" MALLOC_ARENA_MAX=2 "MEMORY_LIMIT_MB=$SERVING_MIB"
  )
  [[ -z $max_upload_bytes ]] || ENV_ENTRIES+=("MAX_UPLOAD_BYTES=$max_upload_bytes")
  [[ -z $max_input_pixels ]] || ENV_ENTRIES+=("MAX_INPUT_PIXELS=$max_input_pixels")
}

# env_var_list VAR ENTRY...: VAR becomes --set-env-vars' value. A value with a
# comma (AUTH=iam,api-key, CORS_ORIGINS, WARMUP_SERVICE_ACCOUNTS) needs
# gcloud's other delimiter (gcloud topic escaping): ^;^ before the list, ;
# between its entries.
env_var_list() {
  local -n list=$1
  shift
  if [[ "$*" == *,* ]]; then
    list=$(IFS=';' && printf '^;^%s' "$*")
  else
    list=$(IFS=',' && printf '%s' "$*")
  fi
}

# Sets BUILD_ENV_VARS. gcp-build fetches the model named by MODEL into the
# image, so the build must see the same MODEL as the runtime. onnxruntime-node's
# install script would otherwise download CUDA binaries (.npmrc says the same).
serving_build_env_vars() {
  BUILD_ENV_VARS="MODEL=$model,ONNXRUNTIME_NODE_INSTALL=skip"
}

# default_compute_account VAR: the project's default compute service account,
# from the project's number (looked up once; under --dry-run a variable the
# printed commands set).
default_compute_account() {
  local -n account=$1
  if [[ -z ${project_number:-} ]]; then
    project_number=''
    capture project_number gcloud projects describe "$PROJECT" --format='value(projectNumber)'
  fi
  account=$project_number-compute@developer.gserviceaccount.com
}
