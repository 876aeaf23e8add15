"""What leaves sendwarden: the upstream MTA and its SMTP client, DKIM signing, the Received
header, DKIM key files, and the outbound probes (privacy links, DNS readiness)."""
