#!/usr/bin/env bash
# SQS and STS through the AWS CLI (v1, from PyPI, installed into a virtualenv under target/) against a fresh
# FerryMQ: the commands an operator types, each checked for what it prints. Last line: N passed, N failed.
#   scripts/interop-awscli.sh
# FERRYMQ_INTEROP_PROFILE=debug uses the debug build (what CI has built already) instead of release;
# FERRYMQ_AWSCLI_VENV picks the virtualenv (default target/awscli-venv). Exit status 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${FERRYMQ_INTEROP_AWSCLI_PORT:-19326}
venv=${FERRYMQ_AWSCLI_VENV:-target/awscli-venv}

if [ ! -x "$venv/bin/aws" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q awscli >&2
fi
# shellcheck source=scripts/interop-common.sh
. scripts/interop-common.sh

export AWS_ACCESS_KEY_ID=AKIDCLI AWS_SECRET_ACCESS_KEY=secret AWS_DEFAULT_REGION=us-east-1
aws() { "$venv/bin/aws" --endpoint-url "http://127.0.0.1:$port" --output text "$@"; }
passed=0
failed=0
# check NAME EXPECTED ACTUAL: ACTUAL must contain EXPECTED.
check() {
  if [[ "$3" == *"$2"* ]]; then
    passed=$((passed + 1))
    echo "ok   $1"
  else
    failed=$((failed + 1))
    echo "FAIL $1: expected '$2' in: $3"
  fi
}
# same NAME EXPECTED ACTUAL: ACTUAL must be EXPECTED exactly.
same() {
  if [ "$3" = "$2" ]; then check "$1" "" ""; else check "$1" "exactly '$2'" "$3"; fi
}
# count URL ATTRIBUTE...: the attributes' values, tab-separated, in the order asked.
count() {
  local url=$1 query
  shift
  query="[$(printf 'Attributes.%s,' "$@" | sed 's/,$//')]"
  aws sqs get-queue-attributes --queue-url "$url" --attribute-names "$@" --query "$query" 2>&1 || true
}
# fails NAME CODE COMMAND...: the command must fail with CODE in its error output.
fails() {
  local name=$1 code=$2 out
  shift 2
  if out=$(aws "$@" 2>&1); then
    check "$name" "an error $code" "success: $out"
  else
    check "$name" "$code" "$out"
  fi
}

checks() {
  local url body md5 sent got handle batch fifo first second
  url=$(aws sqs create-queue --queue-name cli-q --query QueueUrl 2>&1 || true)
  check "create-queue answers the queue URL" "/123456789012/cli-q" "$url"
  check "get-queue-url" "$url" "$(aws sqs get-queue-url --queue-name cli-q 2>&1 || true)"
  check "list-queues with a prefix" "$url" "$(aws sqs list-queues --queue-name-prefix cli 2>&1 || true)"

  body='hello from the cli'
  md5=$(printf '%s' "$body" | md5sum | cut -d' ' -f1)
  sent=$(aws sqs send-message --queue-url "$url" --message-body "$body" \
    --message-attributes '{"colour":{"DataType":"String","StringValue":"blue"},"n":{"DataType":"Number.int","StringValue":"7"}}' \
    --query MD5OfMessageBody 2>&1 || true)
  check "send-message answers the body's MD5" "$md5" "$sent"
  got=$(aws sqs receive-message --queue-url "$url" --attribute-names All --message-attribute-names All \
    --output json 2>&1 || true)
  check "receive-message gets the body" "\"Body\": \"$body\"" "$got"
  check "receive-message gets a typed attribute back" '"DataType": "Number.int"' "$got"
  check "receive-message shows the receive count" '"ApproximateReceiveCount": "1"' "$got"
  handle=$(printf '%s' "$got" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Messages"][0]["ReceiptHandle"])' 2>/dev/null || true)
  aws sqs delete-message --queue-url "$url" --receipt-handle "$handle" >/dev/null 2>&1 || true
  same "delete-message empties the queue (visible, in flight)" "0	0" "$(count "$url" ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible)"

  batch=$(aws sqs send-message-batch --queue-url "$url" \
    --entries 'Id=a,MessageBody=one' 'Id=b,MessageBody=two' 'Id=c,MessageBody=three' \
    --query '[length(Successful), length(Failed || `[]`)]' 2>&1 || true)
  check "send-message-batch: three successful, none failed" "3	0" "$batch"
  same "  ... and three visible" "3" "$(count "$url" ApproximateNumberOfMessages)"
  aws sqs set-queue-attributes --queue-url "$url" --attributes VisibilityTimeout=45 >/dev/null 2>&1 || true
  check "set-queue-attributes then get" "45" \
    "$(aws sqs get-queue-attributes --queue-url "$url" --attribute-names VisibilityTimeout 2>&1 || true)"
  aws sqs tag-queue --queue-url "$url" --tags team=ferry >/dev/null 2>&1 || true
  check "tag-queue then list-queue-tags" "ferry" "$(aws sqs list-queue-tags --queue-url "$url" 2>&1 || true)"
  aws sqs purge-queue --queue-url "$url" >/dev/null 2>&1 || true
  same "purge-queue empties it" "0" "$(count "$url" ApproximateNumberOfMessages)"
  fails "a second purge within 60 s" PurgeQueueInProgress sqs purge-queue --queue-url "$url"

  fifo=$(aws sqs create-queue --queue-name cli.fifo \
    --attributes FifoQueue=true,ContentBasedDeduplication=true --query QueueUrl 2>&1 || true)
  check "create-queue of a FIFO queue" "/cli.fifo" "$fifo"
  first=$(aws sqs send-message --queue-url "$fifo" --message-body same --message-group-id g \
    --query '[MessageId,SequenceNumber]' 2>&1 || true)
  second=$(aws sqs send-message --queue-url "$fifo" --message-body same --message-group-id g \
    --query '[MessageId,SequenceNumber]' 2>&1 || true)
  check "a duplicate FIFO send answers the first send's id and sequence number" "$first" "$second"
  same "  ... and is enqueued once" "1" "$(count "$fifo" ApproximateNumberOfMessages)"
  fails "a FIFO send without a group" MissingParameter sqs send-message --queue-url "$fifo" --message-body x

  fails "send-message to a missing queue" "NonExistentQueue" sqs send-message \
    --queue-url "http://127.0.0.1:$port/123456789012/missing" --message-body x
  fails "an attribute out of range" InvalidAttributeValue sqs set-queue-attributes --queue-url "$url" \
    --attributes VisibilityTimeout=99999
  aws sqs delete-queue --queue-url "$url" >/dev/null 2>&1 || true
  fails "get-queue-url after delete-queue" "NonExistentQueue" sqs get-queue-url --queue-name cli-q
  check "sts get-caller-identity" "123456789012" "$(aws sts get-caller-identity --query Account 2>&1 || true)"
}

with_ferrymq "$port" --amqp-port 0 --http-port 0 --mqtt-port 0 --mqtt-ws-port 0 --aws-port "$port" -- checks
echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" = 0 ]
