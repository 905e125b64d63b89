"""`vidgen serve`: an HTTP video API in OpenAI's Videos shape over one loaded model.

api.py the routes; schema.py what a request takes and the video object; plans.py a request checked by
the CLI's functions; store.py the SQLite jobs; worker.py runs jobs on the loaded model; progress.py a
job's percentage and where a deleted job stops; content.py a stream's MP4 while it grows; errors.py
OpenAI-shaped errors; server.py the process: the folder lock, the workers, uvicorn, draining.
"""
