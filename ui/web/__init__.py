"""The Gradio page (`app.py` serves it): `page` (handlers, layout, launch), `session` (one tab's
live listener, no Gradio), `render` (what the page shows, pure functions), `uploads` (the
upload cache's hygiene), `flags` (the page's own flags and port check, no Gradio: imported
before the heavy imports). Importing this package imports nothing heavy."""
