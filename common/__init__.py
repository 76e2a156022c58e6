"""What every package shares and none owns: credential redaction and safe output writes."""
