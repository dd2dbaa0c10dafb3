"""The user's own locustfile: two tasks; the write carries an idempotency key and tells the gate about it."""

import uuid

from locust import FastHttpUser, between, task

from loadgen.ledger_plugin import ledger_fields


class WebUser(FastHttpUser):
    wait_time = between(0.05, 0.2)

    @task(3)
    def list_items(self):
        self.client.get("/items")

    @task
    def add_item(self):
        # A write cut by a killed replica may or may not have been applied: with a key the client can
        # send it again safely, and the ledger records the key so the gate can tell.
        key = str(uuid.uuid4())
        with ledger_fields(idempotency_key=key):
            self.client.post("/items", json={"name": "widget"}, headers={"Idempotency-Key": key})
