"""Provider adapters: the SDK a provider agency implements, and reference adapters."""
