"""The GSMA Mobile Money API 1.1.2 connector: wallets join Ponte through that API, both ways
(docs/mobilemoney.md)."""
