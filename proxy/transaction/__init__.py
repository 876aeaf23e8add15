"""One message's way, whatever front brought it in (SMTP relay, milter, `scan`, a release from
the quarantine): the envelope, recipient screening at RCPT, evaluation (parse once, facts,
judge) and acting on the verdict."""
