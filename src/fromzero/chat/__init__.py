"""The chatbot: conversations with a fine-tuned model, in the terminal (``fromzero chat``) and shared with the server."""
