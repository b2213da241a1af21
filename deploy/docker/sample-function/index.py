import json


def handler(event, context):
    for record in event.get("Records", []):
        print(json.dumps({"messageId": record.get("messageId"), "bytes": len(record.get("body", ""))}))
    return {"batchItemFailures": []}
