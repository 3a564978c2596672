"""The web app, the REST API and vLLM serving."""
