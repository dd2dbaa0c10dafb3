"""The user's own, plain locustfile: a couple of tasks, nothing about ledgers or the gate."""

from locust import FastHttpUser, between, task


class WebUser(FastHttpUser):
    wait_time = between(0.05, 0.2)

    @task(3)
    def list_items(self):
        self.client.get("/items")

    @task
    def add_item(self):
        self.client.post("/items", json={"name": "widget"})
