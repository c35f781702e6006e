"""The course itself: the notebooks' shared steps (course, notebook, plots), running them (runner) and the
students' copies (student)."""
