#!/usr/bin/env bash
# Deploys removeBackgroundFromStorage, triggered by new objects in a bucket
# (Eventarc, google.cloud.storage.object.v1.finalized), and grants what the
# trigger and the function need. `gcloud functions deploy` creates or
# updates, and each grant can be made again, so re-running updates in place.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/serving.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/serving.sh"

FUNCTION=removeBackgroundFromStorage
EVENT_TYPE=google.cloud.storage.object.v1.finalized
# A batch wants no instance idle between batches: the first object of one pays a cold start.
DEFAULT_MIN_INSTANCES=0
# Bounds the bill and the model loads a large upload sets off; raise it for a faster batch.
DEFAULT_MAX_INSTANCES=10
# Inference runs one at a time in an instance. A second event overlaps its
# download, decoding, encoding and upload with the first one's inference; more
# would only wait inside the instance, where Cloud Run should start another.
DEFAULT_CONCURRENCY=2
# Long enough for a 40 MP image with refine on 2 CPUs; event-driven functions allow at most 540 s.
DEFAULT_TIMEOUT=120
MAX_EVENT_TIMEOUT=540

usage() {
  cat <<EOF
Usage: $SCRIPT_NAME --input-bucket=NAME --output-bucket=NAME [options]

Deploys $FUNCTION to Cloud Functions (2nd gen) from $REPO_ROOT,
triggered by every new object in the input bucket, and grants what it needs:
the Cloud Storage service agent may publish to Pub/Sub (how Eventarc hears of
objects), the trigger's service account may receive events and invoke the
function, and the function's runtime service account may read the input
bucket and write the output bucket. Re-running updates in place.

Options override the environment variable named in brackets.
  --project=ID              Google Cloud project [PROJECT] (required)
  --region=REGION           region of the function [REGION] (default $DEFAULT_REGION)
  --input-bucket=NAME       the bucket whose new objects are processed [INPUT_BUCKET] (required)
  --input-prefix=PREFIX     only objects whose names start with it [INPUT_PREFIX] (default all)
  --output-bucket=NAME      where the cutouts go [OUTPUT_BUCKET] (required)
  --output-prefix=PREFIX    put before each input's name [OUTPUT_PREFIX] (default none)
                            One bucket for both needs two prefixes of which
                            neither starts the other, or outputs would trigger
                            removals of their own: that is refused.
  --storage-options=QUERY   the API's parameters for every object [STORAGE_OPTIONS],
                            as a query string, e.g. 'format=webp&crop=true&bg_color=white'
                            (an object's own detourage-PARAMETER metadata wins)
  --max-event-age=DURATION  events older than this are refused, not retried [MAX_EVENT_AGE]
                            (default 1h; seconds, or with s, m or h)
  --trigger-location=LOC    the trigger's location, which must be the input bucket's
                            [TRIGGER_LOCATION] (default: looked up from the bucket)
  --trigger-service-account=EMAIL
                            the account Eventarc invokes the function as
                            [TRIGGER_SERVICE_ACCOUNT] (default: the default compute service account)
  --service-account=EMAIL   runtime service account of the function [SERVICE_ACCOUNT]
                            (default: the default compute service account)
  --model=NAME              model to build in and serve [MODEL]
                            (default: the registry's, $REGISTRY_DEFAULT)
  --memory=SIZE             memory of the function [MEMORY]
                            (default per model: $(model_memory_table))
  --cpu=N                   CPUs of the function [CPU] (default $DEFAULT_CPU)
  --min-instances=N         instances kept up [MIN_INSTANCES] (default $DEFAULT_MIN_INSTANCES)
  --max-instances=N         instance cap [MAX_INSTANCES] (default $DEFAULT_MAX_INSTANCES)
  --concurrency=N           events one instance takes at once [CONCURRENCY] (default $DEFAULT_CONCURRENCY)
  --timeout=SECONDS         one event's timeout [TIMEOUT] (default $DEFAULT_TIMEOUT, at most $MAX_EVENT_TIMEOUT)
  --max-upload-bytes=N      largest object processed [MAX_UPLOAD_BYTES] (default: the service's)
  --max-input-pixels=N      largest image [MAX_INPUT_PIXELS] (default: the service's)
  --infer-threads=N         onnxruntime threads [INFER_THREADS] (default: the CPU count)
  --dry-run                 print the gcloud commands, one per line, and run nothing
  -h, --help                show this help

Failed events are retried (--retry) until MAX_EVENT_AGE; objects that can never
work get OUTPUT_PREFIX/NAME.EXT.error.json instead of a cutout.
EOF
}

read_registry

input_bucket=${INPUT_BUCKET:-}
input_prefix=${INPUT_PREFIX:-}
output_bucket=${OUTPUT_BUCKET:-}
output_prefix=${OUTPUT_PREFIX:-}
storage_options=${STORAGE_OPTIONS:-}
max_event_age=${MAX_EVENT_AGE:-}
trigger_location=${TRIGGER_LOCATION:-}
trigger_service_account=${TRIGGER_SERVICE_ACCOUNT:-}
service_account=${SERVICE_ACCOUNT:-}
serving_settings

while (($#)); do
  OPTION_SHIFT=1
  case $1 in
    --input-bucket | --input-bucket=*) option_value "$@" && input_bucket=$OPTION_VALUE ;;
    --input-prefix | --input-prefix=*) option_value "$@" && input_prefix=$OPTION_VALUE ;;
    --output-bucket | --output-bucket=*) option_value "$@" && output_bucket=$OPTION_VALUE ;;
    --output-prefix | --output-prefix=*) option_value "$@" && output_prefix=$OPTION_VALUE ;;
    --storage-options | --storage-options=*) option_value "$@" && storage_options=$OPTION_VALUE ;;
    --max-event-age | --max-event-age=*) option_value "$@" && max_event_age=$OPTION_VALUE ;;
    --trigger-location | --trigger-location=*) option_value "$@" && trigger_location=$OPTION_VALUE ;;
    --trigger-service-account | --trigger-service-account=*) option_value "$@" && trigger_service_account=$OPTION_VALUE ;;
    --service-account | --service-account=*) option_value "$@" && service_account=$OPTION_VALUE ;;
    *) serving_option "$@" || common_option "$@" ;;
  esac
  shift "$OPTION_SHIFT"
done

check_project_and_region
# check_bucket LABEL VALUE: the rule functions/config.ts applies at start, checked here before the build.
check_bucket() {
  [[ -n $2 ]] || die "no $1: pass --$1=NAME"
  [[ $2 =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$ ]] ||
    die "invalid $1: '$2' (a bucket's name: lower-case letters, digits, - _ and ., without gs://)"
}
check_bucket input-bucket "$input_bucket"
check_bucket output-bucket "$output_bucket"
for prefix in "$input_prefix" "$output_prefix"; do
  [[ $prefix != *$'\n'* && $prefix != *[,\;]* ]] || die "a prefix may hold no line break, comma or semicolon, got '$prefix'"
done
# The loop guard, as the service applies it at start: every output's name starts
# with the output prefix and every processed name with the input prefix.
if [[ $input_bucket == "$output_bucket" ]]; then
  if [[ -z $input_prefix || -z $output_prefix || $input_prefix == "$output_prefix"* || $output_prefix == "$input_prefix"* ]]; then
    die "the output bucket is the input bucket, and the prefixes '$input_prefix' and '$output_prefix' would let outputs trigger removals of their own: use another output bucket, or two prefixes of which neither starts the other (--input-prefix=uploads/ --output-prefix=cutouts/)"
  fi
fi
# The service parses the options at start (and refuses to start on a bad one); a ; would break gcloud's list.
[[ $storage_options != *\;* ]] || die "--storage-options may hold no semicolon, got '$storage_options'"
[[ -z $max_event_age || $max_event_age =~ ^[0-9]{1,9}[smh]?$ ]] ||
  die "--max-event-age must be a duration such as 3600, 90m or 1h, got '$max_event_age'"
[[ -z $trigger_location || $trigger_location =~ ^[a-z0-9-]+$ ]] ||
  die "invalid trigger location: '$trigger_location' (a lower-case location such as europe-west1, eu or us)"
[[ -z $trigger_service_account ]] || check_service_account_email 'trigger service account email' "$trigger_service_account"
[[ -z $service_account ]] || check_service_account_email 'service account email' "$service_account"
check_serving_settings "$FUNCTION" "$MAX_EVENT_TIMEOUT"

serving_env_entries "$timeout"
env_entries=("${ENV_ENTRIES[@]}" "INPUT_BUCKET=$input_bucket" "OUTPUT_BUCKET=$output_bucket")
[[ -z $input_prefix ]] || env_entries+=("INPUT_PREFIX=$input_prefix")
[[ -z $output_prefix ]] || env_entries+=("OUTPUT_PREFIX=$output_prefix")
[[ -z $storage_options ]] || env_entries+=("STORAGE_OPTIONS=$storage_options")
[[ -z $max_event_age ]] || env_entries+=("MAX_EVENT_AGE=$max_event_age")
env_vars=''
env_var_list env_vars "${env_entries[@]}"
serving_build_env_vars

# Both accounts default to the project's default compute service account.
runtime_flags=()
if [[ -n $service_account ]]; then
  runtime_account=$service_account
  runtime_flags+=("--service-account=$service_account")
else
  default_compute_account runtime_account
fi
if [[ -n $trigger_service_account ]]; then
  trigger_account=$trigger_service_account
else
  default_compute_account trigger_account
fi
if [[ -z $trigger_location ]]; then
  capture trigger_location gcloud storage buckets describe "gs://$input_bucket" --project="$PROJECT" --format='value(location)'
  # Buckets give their location in upper case (EUROPE-WEST1, US); Eventarc's locations are lower case.
  if $DRY_RUN; then
    # shellcheck disable=SC2016 # the output is shell code for the reader to run
    printf '%s\n' 'trigger_location=${trigger_location,,}'
  else
    trigger_location=${trigger_location,,}
  fi
fi

# What Eventarc needs before the trigger is made: Cloud Storage's own agent
# publishes the bucket's events to Pub/Sub, and the trigger's account receives them.
storage_agent=''
capture storage_agent gcloud storage service-agent --project="$PROJECT"
run gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$storage_agent" --role=roles/pubsub.publisher
run gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$trigger_account" --role=roles/eventarc.eventReceiver
# What the function needs before its first event: reading inputs, and on the
# output bucket creating objects, reading their metadata (a redelivery's check)
# and replacing the output of an older generation, which needs delete:
# roles/storage.objectUser holds all three (objectCreator alone cannot replace).
if [[ $input_bucket != "$output_bucket" ]]; then
  run gcloud storage buckets add-iam-policy-binding "gs://$input_bucket" --member="serviceAccount:$runtime_account" --role=roles/storage.objectViewer
fi
run gcloud storage buckets add-iam-policy-binding "gs://$output_bucket" --member="serviceAccount:$runtime_account" --role=roles/storage.objectUser

# --retry: without it Eventarc drops an event whose delivery failed, the
# transient failures included; the function itself acknowledges what can never work.
run gcloud functions deploy "$FUNCTION" --project="$PROJECT" --gen2 --region="$REGION" \
  --runtime="$RUNTIME" --source="$REPO_ROOT" --entry-point="$FUNCTION" \
  --trigger-event-filters="type=$EVENT_TYPE" --trigger-event-filters="bucket=$input_bucket" \
  --trigger-location="$trigger_location" --trigger-service-account="$trigger_account" --retry \
  --memory="$memory" --cpu="$cpu" --min-instances="$min_instances" --max-instances="$max_instances" \
  --concurrency="$concurrency" --timeout="${timeout}s" --set-env-vars="$env_vars" --set-build-env-vars="$BUILD_ENV_VARS" \
  "${runtime_flags[@]}"
# The trigger's account invokes the function's Cloud Run service; granted on
# that service alone, which exists only once deployed.
run gcloud functions add-invoker-policy-binding "$FUNCTION" --project="$PROJECT" --region="$REGION" \
  --member="serviceAccount:$trigger_account"

note "start a batch with: gcloud storage cp -r ./photos gs://$input_bucket/$input_prefix"
