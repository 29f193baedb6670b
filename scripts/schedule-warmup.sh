#!/usr/bin/env bash
# Creates or updates the Cloud Scheduler job that keeps removeBackground's
# model loaded. The job sends GET to the removeBackground service itself: in
# gen2 each function is its own Cloud Run service, so a ping to the warmup
# function would warm only warmup's instances. The job signs an OIDC token as
# a service account: Cloud Run's IAM checks it when the function is private
# (AUTH=iam), the service itself when it is public (WARMUP_SERVICE_ACCOUNTS).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# Cloud Run keeps an idle instance for some minutes; a ping every 5 minutes
# keeps one (and its loaded model) from ever reaching that.
DEFAULT_SCHEDULE='*/5 * * * *'

usage() {
  cat <<EOF
Usage: $SCRIPT_NAME [options]

Creates or updates a Cloud Scheduler job that sends GET to removeBackground
(which loads the model and runs one inference before answering), with an OIDC
token of EMAIL for removeBackground's URL, and grants EMAIL the invoker role
on removeBackground.

When removeBackground is public (deployed with AUTH without iam), the service
checks that token itself: EMAIL must be listed in its WARMUP_SERVICE_ACCOUNTS
(deploy.sh --warmup-service-account, which defaults to the same account as
here), or every warmup is answered 401. The invoker role is not needed then;
it is granted anyway, which is harmless and keeps the job working if the
function goes back to AUTH=iam.

Options override the environment variable named in brackets.
  --project=ID              Google Cloud project [PROJECT] (required)
  --region=REGION           region of the function and the job [REGION] (default $DEFAULT_REGION)
  --service-account=EMAIL   identity of the job's OIDC token [SCHEDULER_SERVICE_ACCOUNT]
                            (default $DEFAULT_WARMER_NAME@PROJECT.iam.gserviceaccount.com)
  --schedule=CRON           when to ping, in cron syntax, UTC [WARMUP_SCHEDULE] (default '$DEFAULT_SCHEDULE')
  --job=NAME                scheduler job name [WARMUP_JOB] (default $DEFAULT_WARMUP_JOB)
  --url=URL                 removeBackground's URL (default: asked from gcloud functions describe)
  --dry-run                 print the gcloud commands, one per line, and run nothing
  -h, --help                show this help
EOF
}

service_account=${SCHEDULER_SERVICE_ACCOUNT:-}
schedule=${WARMUP_SCHEDULE:-$DEFAULT_SCHEDULE}
job=${WARMUP_JOB:-$DEFAULT_WARMUP_JOB}
url=''

while (($#)); do
  OPTION_SHIFT=1
  case $1 in
    --service-account | --service-account=*) option_value "$@" && service_account=$OPTION_VALUE ;;
    --schedule | --schedule=*) option_value "$@" && schedule=$OPTION_VALUE ;;
    --job | --job=*) option_value "$@" && job=$OPTION_VALUE ;;
    --url | --url=*) option_value "$@" && url=$OPTION_VALUE ;;
    *) common_option "$@" ;;
  esac
  shift "$OPTION_SHIFT"
done

check_project_and_region
check_job_name "$job"
if [[ -z $service_account ]]; then
  default_warmer_account
  service_account=$DEFAULT_WARMER_ACCOUNT
  [[ -n $service_account ]] ||
    die "no service account: pass --service-account=EMAIL or set SCHEDULER_SERVICE_ACCOUNT (a domain-scoped project has no default)"
fi
check_service_account_email 'service account email' "$service_account"
read -ra schedule_fields <<<"$schedule"
if ((${#schedule_fields[@]} != 5)) || [[ ! $schedule =~ ^[0-9A-Za-z*/,[:space:]-]+$ ]]; then
  die "schedule must be a cron expression with 5 fields, like '$DEFAULT_SCHEDULE', got '$schedule'"
fi
[[ -z $url || $url =~ ^https://[^[:space:]]+$ ]] || die "the URL must start with https://, got '$url'"

if [[ -z $url ]]; then
  capture url gcloud functions describe "$SERVING_FUNCTION" --project="$PROJECT" --gen2 --region="$REGION" \
    --format='value(serviceConfig.uri)'
  [[ -n $url ]] || fail "$SERVING_FUNCTION has no URL yet: deploy it first (scripts/deploy.sh)"
fi

# Adding a binding that exists already changes nothing, so re-runs are safe.
run gcloud functions add-invoker-policy-binding "$SERVING_FUNCTION" --project="$PROJECT" --region="$REGION" \
  --member="serviceAccount:$service_account"

verb=''
choose verb update create gcloud scheduler jobs describe "$job" --project="$PROJECT" --location="$REGION"
# create and update take the same flags, so one command line serves both.
run gcloud scheduler jobs "$verb" http "$job" --project="$PROJECT" --location="$REGION" \
  --schedule="$schedule" --uri="$url" --http-method=GET \
  --oidc-service-account-email="$service_account" --oidc-token-audience="$url" \
  --description="detourage: GET $SERVING_FUNCTION to keep its model loaded"
