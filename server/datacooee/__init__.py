"""The Datacooee data API: upload documents, fetch parameters and answers (docs/datacooee.md)."""
