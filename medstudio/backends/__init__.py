"""Model backends: the OpenAI-compatible chat endpoints an admin registers once (a `vllm serve`
box, a hosted API) and curators then pick by name in every judge, generator and scorer form."""
