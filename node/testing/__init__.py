"""Test switches (Byzantine behaviour, tampering) injected from outside the daemon; nothing in
production imports this package (tests/layering checks it)."""
