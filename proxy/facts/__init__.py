"""Facts: what the shell looks up before the pure checks run (DKIM verification, a virus scan,
recipient state, DNS), gathered concurrently under the policy time budget and handed to the
checks in `Context.facts`."""
