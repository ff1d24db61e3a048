"""The straight lines from a request to an answer: sign, verify, admit, check a push."""
