"""ISO 20022 connector: banks speak pacs, camt, pain and admi messages (XML, head.001 header)
over HTTPS; `mapping` translates them to and from the core's messages, `transport` carries
them. See docs/iso20022.md."""
