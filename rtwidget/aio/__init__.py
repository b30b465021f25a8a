"""asyncio helpers every other package may use; they import nothing else of rtwidget."""
