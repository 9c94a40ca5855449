//! ethos-server: OpenAI-compatible HTTP server.
