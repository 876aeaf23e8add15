"""The parsed, immutable view of one message: MIME structure, decoded text, the HTML as a mail
client shows it (visible text, links, styles), URLs and domains. Pure: no I/O, nothing from the
shell; every check reads this view and none parses again."""
