#!/usr/bin/env bash
# Deploys the three functions to Cloud Functions (2nd gen) from this repository.
# `gcloud functions deploy` creates or updates, so re-running updates in place.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/serving.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/serving.sh"

# Sizing of removeBackground, and of warmup, which loads the same model: the
# memory per model and the CPUs are lib/serving.sh's.
#
# A cold instance pays the Node start and the model load (seconds) before its
# first removal; one instance kept up avoids that for steady light traffic.
DEFAULT_MIN_INSTANCES=1
# Bounds the bill under a burst or abuse; raise it for real traffic.
DEFAULT_MAX_INSTANCES=10
# Inference runs one at a time inside an instance, so extra concurrent requests
# only wait there. A few may wait (a short burst costs seconds of queueing
# rather than a cold start), but not more than the service's own queue (4), or
# the instance would answer 503 where Cloud Run should have scaled out.
DEFAULT_CONCURRENCY=4
# Cloud Functions' default; the service answers its own 504 a little earlier.
DEFAULT_TIMEOUT=60
# warmup exists for explicit checks; the scheduled warmup goes to removeBackground.
WARMUP_MIN_INSTANCES=0
WARMUP_MAX_INSTANCES=1

# health never loads the model: the smallest tier. Below 1 CPU Cloud Run
# allows one request at a time per instance.
HEALTH_MEMORY=256Mi
HEALTH_CPU=0.167
HEALTH_CONCURRENCY=1
HEALTH_MIN_INSTANCES=0
HEALTH_MAX_INSTANCES=3

# AUTH modes the service implements (functions/config.ts). Every mode but iam
# is a check the service makes of each caller itself.
AUTH_MODES=(iam api-key firebase app-check)
DEFAULT_API_KEY_SECRET=detourage-api-key-hashes
SECRET_ACCESSOR_ROLE=roles/secretmanager.secretAccessor

usage() {
  cat <<EOF
Usage: $SCRIPT_NAME [options]

Deploys health, warmup and removeBackground to Cloud Functions (2nd gen) from
$REPO_ROOT. Cloud Build compiles the TypeScript and fetches the
model into the image (npm run gcp-build). Re-running updates in place.

Options override the environment variable named in brackets.
  --project=ID              Google Cloud project [PROJECT] (required)
  --region=REGION           region [REGION] (default $DEFAULT_REGION)
  --model=NAME              model to build in and serve [MODEL]
                            (default: the registry's, $REGISTRY_DEFAULT)
  --memory=SIZE             memory of removeBackground and warmup [MEMORY]
                            (default per model: $(model_memory_table))
  --cpu=N                   CPUs of removeBackground and warmup [CPU] (default $DEFAULT_CPU)
  --min-instances=N         instances of removeBackground kept up [MIN_INSTANCES]
                            (default $DEFAULT_MIN_INSTANCES; each is billed while idle)
  --max-instances=N         instance cap of removeBackground [MAX_INSTANCES] (default $DEFAULT_MAX_INSTANCES)
  --concurrency=N           requests per removeBackground instance [CONCURRENCY] (default $DEFAULT_CONCURRENCY)
  --timeout=SECONDS         request timeout [TIMEOUT] (default $DEFAULT_TIMEOUT)
  --max-upload-bytes=N      service limit [MAX_UPLOAD_BYTES] (default: the service's)
  --max-input-pixels=N      service limit [MAX_INPUT_PIXELS] (default: the service's)
  --infer-threads=N         onnxruntime threads [INFER_THREADS] (default: the CPU count)
  --auth=MODES              who may call removeBackground and warmup [AUTH], a
                            comma-separated list; a request passes if any passes:
                              iam        an identity token, checked by Cloud Run (the default)
                              api-key    an X-Api-Key header
                              firebase   a Firebase Auth ID token (Authorization: Bearer)
                              app-check  a Firebase App Check token (X-Firebase-AppCheck)
                            The service checks api-key, firebase and app-check itself;
                            without iam the two functions are public at the IAM level,
                            with iam they stay private (e.g. iam,api-key)
  --api-key-secret=NAME     Secret Manager secret holding API_KEY_HASHES [API_KEY_SECRET]
                            (default $DEFAULT_API_KEY_SECRET; create it first, see README)
  --firebase-project=ID     Firebase project whose ID tokens and App Check tokens are
                            accepted [FIREBASE_PROJECT_ID] (firebase or app-check only;
                            default: --project)
  --warmup-service-account=EMAIL[,EMAIL]
                            service accounts whose Google-signed OIDC token (what
                            schedule-warmup.sh's job sends) may warm up a public
                            deployment [WARMUP_SERVICE_ACCOUNTS]; AUTH without iam only
                            (default $DEFAULT_WARMER_NAME@PROJECT.iam.gserviceaccount.com,
                            the account schedule-warmup.sh signs as by default)
  --no-warmup-service-account
                            accept no warmup token: a scheduled warmup of a public
                            deployment is then answered 401
  --service-account=EMAIL   runtime service account of the functions [SERVICE_ACCOUNT]
                            (default: the project's default compute service account)
  --cors-origins=LIST       origins whose pages may call the functions [CORS_ORIGINS]
                            (comma-separated, e.g. https://app.example.com; default none)
  --rate-limit-per-minute=N requests per minute per caller (API key, Firebase user or
                            App Check app), per instance [RATE_LIMIT_PER_MINUTE]
                            (api-key, firebase or app-check; default no limit)
  --allow-unauthenticated   make health public too [ALLOW_UNAUTHENTICATED=true]; refused
                            when AUTH includes iam, since with iam the service
                            checks nobody itself
  --no-allow-unauthenticated
                            health requires an identity token (the default)
  --dry-run                 print the gcloud commands, one per line, and run nothing
  -h, --help                show this help

health always runs on the smallest tier ($HEALTH_MEMORY, $HEALTH_CPU CPU); warmup on
removeBackground's tier with no instance kept up.
EOF
}

read_registry

serving_settings
parse_boolean allow_unauthenticated ALLOW_UNAUTHENTICATED "${ALLOW_UNAUTHENTICATED:-false}"
auth=${AUTH:-iam}
api_key_secret=${API_KEY_SECRET:-$DEFAULT_API_KEY_SECRET}
service_account=${SERVICE_ACCOUNT:-}
cors_origins=${CORS_ORIGINS:-}
rate_limit_per_minute=${RATE_LIMIT_PER_MINUTE:-}
firebase_project=${FIREBASE_PROJECT_ID:-}
warmup_service_accounts=${WARMUP_SERVICE_ACCOUNTS:-}
# false after --no-warmup-service-account: no default account either.
warmup_default=true

while (($#)); do
  OPTION_SHIFT=1
  case $1 in
    --auth | --auth=*) option_value "$@" && auth=$OPTION_VALUE ;;
    --api-key-secret | --api-key-secret=*) option_value "$@" && api_key_secret=$OPTION_VALUE ;;
    --service-account | --service-account=*) option_value "$@" && service_account=$OPTION_VALUE ;;
    --cors-origins | --cors-origins=*) option_value "$@" && cors_origins=$OPTION_VALUE ;;
    --rate-limit-per-minute | --rate-limit-per-minute=*) option_value "$@" && rate_limit_per_minute=$OPTION_VALUE ;;
    --firebase-project | --firebase-project=*) option_value "$@" && firebase_project=$OPTION_VALUE ;;
    --warmup-service-account | --warmup-service-account=*)
      option_value "$@" && warmup_service_accounts=$OPTION_VALUE && warmup_default=true
      ;;
    --no-warmup-service-account) warmup_service_accounts='' warmup_default=false ;;
    --allow-unauthenticated) allow_unauthenticated=true ;;
    --no-allow-unauthenticated) allow_unauthenticated=false ;;
    *) serving_option "$@" || common_option "$@" ;;
  esac
  shift "$OPTION_SHIFT"
done

check_project_and_region
check_serving_settings "$SERVING_FUNCTION" 3600
check_tier health "$HEALTH_MEMORY" "$HEALTH_CPU" "$HEALTH_CONCURRENCY"

auth=${auth// /}
auth=${auth,,}
IFS=, read -r -a auth_modes <<<"$auth"
((${#auth_modes[@]} > 0)) || die "--auth needs a comma-separated list of modes (${AUTH_MODES[*]}), got '$auth'"
for mode in "${auth_modes[@]}"; do
  [[ -n $mode ]] || die "--auth needs a comma-separated list of modes (${AUTH_MODES[*]}), got '$auth'"
  [[ " ${AUTH_MODES[*]} " == *" $mode "* ]] || die "unknown auth mode '$mode' (known: ${AUTH_MODES[*]})"
done
auth_has() { [[ ",$auth," == *",$1,"* ]]; }
# The modes in which the service checks each caller itself.
checks_callers=false
for mode in "${auth_modes[@]}"; do
  [[ $mode == iam ]] || checks_callers=true
done
[[ $api_key_secret =~ ^[A-Za-z0-9_-]{1,255}$ ]] || die "invalid secret name: '$api_key_secret' (letters, digits, - and _ only)"
[[ -z $service_account ]] || check_service_account_email 'service account email' "$service_account"
# The service checks each origin fully at start; this catches what would otherwise fail only then.
cors_origins=${cors_origins// /}
[[ -z $cors_origins || $cors_origins =~ ^https?://[^/,\;*]+(,https?://[^/,\;*]+)*$ ]] ||
  die "CORS origins must be a comma-separated list of origins like https://app.example.com (no * and no path), got '$cors_origins'"
if [[ -n $rate_limit_per_minute ]]; then
  check_integer rate_limit_per_minute 'rate limit per minute' 1 1000000
  $checks_callers ||
    die "a rate limit counts requests per caller (API key, Firebase user or App Check app): it needs --auth with api-key, firebase or app-check"
fi
if auth_has firebase || auth_has app-check; then
  firebase_project=${firebase_project:-$PROJECT}
  check_project_id 'Firebase project ID' "$firebase_project"
elif [[ -n $firebase_project ]]; then
  die "--firebase-project (FIREBASE_PROJECT_ID) names the project whose Firebase tokens are accepted: it needs --auth with firebase or app-check, got AUTH=$auth"
fi
# The service's iam mode trusts Cloud Run to have checked the caller, so the
# two functions it protects must stay behind IAM whenever iam is a mode.
if auth_has iam && $allow_unauthenticated; then
  die "--allow-unauthenticated with AUTH=$auth would make the functions public while the service checks nobody itself (iam trusts Cloud Run's check); leave iam out (--auth=api-key, firebase or app-check) to serve public callers"
fi
# Behind IAM the scheduler's token is Cloud Run's to check (schedule-warmup.sh
# grants its account the invoker role), and the service refuses the setting.
# A public deployment checks it itself: without an account there, every
# scheduled warmup would be answered 401, so schedule-warmup.sh's default
# account is trusted unless the operator names others or none.
warmup_service_accounts=${warmup_service_accounts// /}
if auth_has iam; then
  [[ -z $warmup_service_accounts ]] ||
    die "--warmup-service-account (WARMUP_SERVICE_ACCOUNTS) is for public deployments: with AUTH=$auth Cloud Run's IAM checks the scheduler's token, and schedule-warmup.sh grants its account the invoker role"
elif [[ -z $warmup_service_accounts ]] && $warmup_default; then
  default_warmer_account
  warmup_service_accounts=$DEFAULT_WARMER_ACCOUNT
  [[ -n $warmup_service_accounts ]] ||
    die "a public deployment of a domain-scoped project needs --warmup-service-account=EMAIL (the account of schedule-warmup.sh) or --no-warmup-service-account"
  note "scheduled warmups are accepted from $warmup_service_accounts (schedule-warmup.sh's default account); --warmup-service-account names others, --no-warmup-service-account none"
elif [[ -z $warmup_service_accounts ]]; then
  note "warning: no warmup account: the service will answer a scheduled warmup 401, so each instance loads the model on its first removal"
fi
IFS=, read -r -a warmup_accounts <<<"$warmup_service_accounts"
for account in "${warmup_accounts[@]}"; do
  check_service_account_email 'warmup service account email' "$account"
done
# Without iam the service checks every caller, and Cloud Run must let
# callers through: browsers' preflights carry no identity token at all.
if auth_has iam; then
  protected_auth_flag=--no-allow-unauthenticated
else
  protected_auth_flag=--allow-unauthenticated
fi

# health gets the serving functions' environment too; it never reserves memory.
serving_env_entries "$timeout"
env_entries=("AUTH=$auth" "${ENV_ENTRIES[@]}")
[[ -z $cors_origins ]] || env_entries+=("CORS_ORIGINS=$cors_origins")
[[ -z $rate_limit_per_minute ]] || env_entries+=("RATE_LIMIT_PER_MINUTE=$rate_limit_per_minute")
[[ -z $firebase_project ]] || env_entries+=("FIREBASE_PROJECT_ID=$firebase_project")
[[ -z $warmup_service_accounts ]] || env_entries+=("WARMUP_SERVICE_ACCOUNTS=$warmup_service_accounts")
env_vars=''
env_var_list env_vars "${env_entries[@]}"
serving_build_env_vars
# Always one of the two: with neither, gcloud asks on a new function and leaves
# an existing one as it was, so a function once made public would stay public.
if $allow_unauthenticated; then
  health_auth_flag=--allow-unauthenticated
else
  health_auth_flag=--no-allow-unauthenticated
fi
# The hashes come from Secret Manager, read when an instance starts, never from
# a command line (which shell history and process lists keep). All three
# functions load the same configuration, health included, so all three get
# them. Without api-key the secret is cleared: a redeploy from api-key back to
# iam would otherwise keep API_KEY_HASHES, which the service then refuses.
runtime_flags=()
[[ -z $service_account ]] || runtime_flags+=("--service-account=$service_account")
if auth_has api-key; then
  runtime_flags+=("--set-secrets=API_KEY_HASHES=$api_key_secret:latest")
else
  runtime_flags+=(--clear-secrets)
fi

# deploy_function NAME AUTH_FLAG MEMORY CPU MIN_INSTANCES MAX_INSTANCES CONCURRENCY
deploy_function() {
  run gcloud functions deploy "$1" --project="$PROJECT" --gen2 --region="$REGION" \
    --runtime="$RUNTIME" --source="$REPO_ROOT" --entry-point="$1" --trigger-http "$2" \
    --memory="$3" --cpu="$4" --min-instances="$5" --max-instances="$6" --concurrency="$7" \
    --timeout="${timeout}s" --set-env-vars="$env_vars" --set-build-env-vars="$BUILD_ENV_VARS" "${runtime_flags[@]}"
}

if auth_has api-key; then
  # The runtime service account reads the secret; without the grant a new
  # instance fails to start. Granted before the deploys, which start instances.
  if [[ -n $service_account ]]; then
    runtime_account=$service_account
  else
    default_compute_account runtime_account
  fi
  run gcloud secrets add-iam-policy-binding "$api_key_secret" --project="$PROJECT" \
    --member="serviceAccount:$runtime_account" --role="$SECRET_ACCESSOR_ROLE"
fi

deploy_function removeBackground "$protected_auth_flag" "$memory" "$cpu" "$min_instances" "$max_instances" "$concurrency"
deploy_function warmup "$protected_auth_flag" "$memory" "$cpu" "$WARMUP_MIN_INSTANCES" "$WARMUP_MAX_INSTANCES" "$concurrency"
deploy_function health "$health_auth_flag" "$HEALTH_MEMORY" "$HEALTH_CPU" "$HEALTH_MIN_INSTANCES" "$HEALTH_MAX_INSTANCES" "$HEALTH_CONCURRENCY"
# Session affinity sends a client's next requests to the instance that served
# it (a Cloud Run cookie, best effort), where the mask cache holds its photo's
# mask. gcloud functions deploy has no flag for it, so the function's Cloud Run
# service (its name in lower case) is updated, on every deploy, and last: a
# failure here (it needs run.services.update) leaves the three functions deployed.
run gcloud run services update "${SERVING_FUNCTION,,}" --project="$PROJECT" --region="$REGION" --session-affinity

if ! $DRY_RUN; then
  if ((${#warmup_accounts[@]} > 0)); then
    note "deployed. Keep removeBackground's model loaded with scripts/schedule-warmup.sh --project=$PROJECT --region=$REGION --service-account=${warmup_accounts[0]}"
  elif auth_has iam; then
    # Behind IAM any account will do: the script grants it the invoker role.
    note "deployed. Keep removeBackground's model loaded with scripts/schedule-warmup.sh --project=$PROJECT --region=$REGION"
  else
    note "deployed."
  fi
fi
