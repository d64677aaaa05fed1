"""One module per page of the Gradio app; each lays out components and wires events to sslcore calls."""
