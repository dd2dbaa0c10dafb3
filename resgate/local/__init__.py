"""Local mode: embedded Postgres and Kafka, the process supervisor and the local load balancer."""
