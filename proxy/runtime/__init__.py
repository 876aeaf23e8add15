"""The running service: start-up, listeners, reload and shutdown, worker processes, systemd
notification, the ops web endpoint, TLS contexts and warm-up."""
