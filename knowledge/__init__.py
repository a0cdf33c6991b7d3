"""The knowledge base: Markdown articles (zh/en) and a Chinese-aware BM25 index."""
