"""What xstream tells users: costs (measure), model and stream descriptions (inspect), what a conversion did
(conversion), and the text of all of them (text). Pure data in, data or text out: nothing here runs a model."""
