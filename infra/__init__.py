"""The no-Docker local Kafka broker and schema registry (`quantum infra up|down|status`)."""
