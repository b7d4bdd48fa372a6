"""The course, as package data: levels of lessons that call the library (see course.py)."""
