"""Plain Locust against the stalling service: requests wait as long as a browser would (60 s), so a stuck
service shows as requests that never complete, not as timeouts."""

from locust import FastHttpUser, between, task


class Reader(FastHttpUser):
    wait_time = between(0.02, 0.1)
    network_timeout = 60.0
    connection_timeout = 60.0

    @task
    def read(self):
        self.client.get("/items")
