"""studybot user interfaces: the `studybot` CLI and the Gradio app."""
