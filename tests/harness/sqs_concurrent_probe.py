"""Sends and deletes on one SQS queue from several threads at once, over a
backlog of thousands, the way the engine's processes share a busy queue,
and prints as JSON what the queue should hold (backlog + sent - deleted)
and what it holds (visible + in flight): more means deleted messages came
back, fewer means sent messages were lost.

Usage: sqs_concurrent_probe.py ENDPOINT_URL
"""

import json
import sys
import threading

import boto3

BACKLOG = 8000
THREADS = 4
BATCHES_PER_THREAD = 25


def client(endpoint):
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def send_batch(sqs, url, prefix):
    out = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "MessageBody": f"{prefix}-{i}"} for i in range(10)],
    )
    assert not out.get("Failed"), out


def in_threads(target):
    threads = [threading.Thread(target=target, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(endpoint):
    url = client(endpoint).create_queue(QueueName="concurrent-probe")["QueueUrl"]
    errors, deleted, lock = [], [0], threading.Lock()

    def fill(k):
        own = client(endpoint)
        for b in range(k, BACKLOG // 10, THREADS):
            send_batch(own, url, f"backlog-{b}")

    def sender(k):
        own = client(endpoint)
        for b in range(BATCHES_PER_THREAD):
            send_batch(own, url, f"sender-{k}-{b}")

    def deleter(_):
        own = client(endpoint)
        for _ in range(BATCHES_PER_THREAD):
            got = own.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
            ).get("Messages", [])
            out = own.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
            )
            if out.get("Failed"):
                errors.append(out["Failed"])
            with lock:
                deleted[0] += len(out.get("Successful", []))

    in_threads(fill)
    both = [threading.Thread(target=sender, args=(k,)) for k in range(THREADS)]
    both += [threading.Thread(target=deleter, args=(k,)) for k in range(THREADS)]
    for t in both:
        t.start()
    for t in both:
        t.join()
    attrs = client(endpoint).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    held = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
    expected = BACKLOG + THREADS * BATCHES_PER_THREAD * 10 - deleted[0]
    print(json.dumps({"expected": expected, "held": held, "deleted": deleted[0], "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1])
