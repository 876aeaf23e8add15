"""The SMTP front end: aiosmtpd's protocol with a smuggling-safe bulk DATA reader, and the
handler that runs the policy engine and relays."""
