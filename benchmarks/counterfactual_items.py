"""Candidate counterfactual-context questions, from word lists written for this project.

Every candidate is (kind, subject, true answer): its question asks for a well-known fact,
its context states a false one (the true answer swapped for another of the same kind).
benchmarks/context_divergence.py --build keeps all candidates in interp/data/counterfactual.jsonl
and records which ones the bundled model answers right without the context ("known").
"""

import random

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo", "China": "Beijing",
    "Russia": "Moscow", "England": "London", "Egypt": "Cairo", "Greece": "Athens", "Portugal": "Lisbon",
    "Austria": "Vienna", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Hungary": "Budapest", "Belgium": "Brussels",
    "the Netherlands": "Amsterdam", "Switzerland": "Bern", "Turkey": "Ankara", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "South Korea": "Seoul", "Indonesia": "Jakarta", "the Philippines": "Manila",
    "Kenya": "Nairobi", "Nigeria": "Abuja", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota",
    "Canada": "Ottawa", "Australia": "Canberra", "Cuba": "Havana", "Iran": "Tehran", "Iraq": "Baghdad",
    "Lebanon": "Beirut", "Syria": "Damascus", "Saudi Arabia": "Riyadh", "Afghanistan": "Kabul",
    "Pakistan": "Islamabad", "Bangladesh": "Dhaka", "Ukraine": "Kyiv", "Romania": "Bucharest", "Bulgaria": "Sofia",
    "Serbia": "Belgrade", "Croatia": "Zagreb", "Iceland": "Reykjavik", "Morocco": "Rabat", "Ghana": "Accra",
    "Venezuela": "Caracas", "Uruguay": "Montevideo", "Scotland": "Edinburgh", "Wales": "Cardiff",
    "Brazil": "Brasilia", "the United States": "Washington", "Argentina": "Buenos Aires", "India": "New Delhi",
}
LANGUAGES = {
    "France": "French", "Germany": "German", "Italy": "Italian", "Spain": "Spanish", "Japan": "Japanese",
    "China": "Chinese", "Russia": "Russian", "Portugal": "Portuguese", "Brazil": "Portuguese", "Greece": "Greek",
    "Turkey": "Turkish", "Poland": "Polish", "Sweden": "Swedish", "Norway": "Norwegian", "Finland": "Finnish",
    "Denmark": "Danish", "the Netherlands": "Dutch", "Korea": "Korean", "Vietnam": "Vietnamese", "Thailand": "Thai",
    "Egypt": "Arabic", "Mexico": "Spanish", "Argentina": "Spanish", "Iran": "Persian", "Israel": "Hebrew",
    "Hungary": "Hungarian", "Ukraine": "Ukrainian", "England": "English", "Australia": "English", "India": "Hindi",
}
CONTINENTS = {
    "Kenya": "Africa", "Nigeria": "Africa", "Egypt": "Africa", "Ghana": "Africa", "Morocco": "Africa",
    "Ethiopia": "Africa", "France": "Europe", "Germany": "Europe", "Italy": "Europe", "Spain": "Europe",
    "Poland": "Europe", "Sweden": "Europe", "Norway": "Europe", "Greece": "Europe", "Portugal": "Europe",
    "Japan": "Asia", "China": "Asia", "India": "Asia", "Thailand": "Asia", "Vietnam": "Asia", "Korea": "Asia",
    "Indonesia": "Asia", "Pakistan": "Asia", "Brazil": "South America", "Argentina": "South America",
    "Peru": "South America", "Chile": "South America", "Colombia": "South America", "Canada": "North America",
    "Mexico": "North America", "the United States": "North America",
}
CITY_COUNTRY = {
    "Paris": "France", "London": "England", "Tokyo": "Japan", "Berlin": "Germany", "Rome": "Italy",
    "Madrid": "Spain", "Moscow": "Russia", "Beijing": "China", "Sydney": "Australia", "Toronto": "Canada",
    "Mumbai": "India", "Cairo": "Egypt", "Istanbul": "Turkey", "Munich": "Germany", "Milan": "Italy",
    "Barcelona": "Spain", "Osaka": "Japan", "Shanghai": "China", "Melbourne": "Australia", "Vancouver": "Canada",
    "Delhi": "India", "Lisbon": "Portugal", "Athens": "Greece", "Vienna": "Austria", "Dublin": "Ireland",
    "Amsterdam": "the Netherlands", "Stockholm": "Sweden", "Warsaw": "Poland", "Venice": "Italy", "Lyon": "France",
    "Chicago": "the United States", "Boston": "the United States", "Seoul": "Korea", "Bangkok": "Thailand",
    "Nairobi": "Kenya", "Lagos": "Nigeria", "Lima": "Peru", "Havana": "Cuba", "Mexico City": "Mexico",
    "Rio de Janeiro": "Brazil",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "left": "right", "day": "night", "black": "white", "good": "bad",
    "fast": "slow", "happy": "sad", "tall": "short", "rich": "poor", "open": "closed", "early": "late",
    "hard": "soft", "wet": "dry", "full": "empty", "strong": "weak", "love": "hate", "win": "lose",
    "push": "pull", "in": "out", "yes": "no", "true": "false", "high": "low", "thick": "thin", "clean": "dirty",
    "loud": "quiet", "begin": "end", "front": "back", "north": "south", "east": "west", "alive": "dead",
    "war": "peace", "question": "answer", "friend": "enemy", "first": "last", "buy": "sell", "inside": "outside",
    "above": "below", "always": "never", "more": "less", "before": "after", "top": "bottom",
    "cheap": "expensive", "easy": "difficult", "positive": "negative", "wide": "narrow", "deep": "shallow",
    "smooth": "rough", "light": "dark", "heavy": "light", "young": "old", "long": "short", "near": "far",
    "give": "take", "arrive": "leave", "sweet": "sour", "increase": "decrease", "minimum": "maximum",
}
COLORS = {
    "the sky": "blue", "grass": "green", "snow": "white", "coal": "black", "blood": "red", "a banana": "yellow",
    "a lemon": "yellow", "milk": "white", "chocolate": "brown", "a strawberry": "red", "a carrot": "orange",
    "a ripe tomato": "red", "the sun": "yellow", "a cherry": "red", "a leaf": "green", "the ocean": "blue",
    "ink": "black", "a cloud": "white", "a frog": "green", "a flamingo": "pink", "salt": "white", "tree bark": "brown",
    "an orange": "orange", "a crow": "black", "a polar bear": "white", "a pumpkin": "orange", "a lime": "green",
    "a fire truck": "red", "the night sky": "black", "sugar": "white",
}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
PLURALS = {"mouse": "mice", "child": "children", "man": "men", "foot": "feet", "tooth": "teeth", "goose": "geese",
           "woman": "women", "person": "people", "ox": "oxen", "cactus": "cacti", "leaf": "leaves", "knife": "knives",
           "wolf": "wolves", "fish": "fish", "sheep": "sheep"}


def _kind(kind, table, question, stem):
    return [(kind, subject, answer, question.format(s=subject), stem.format(s=subject, S=subject[0].upper() + subject[1:]))
            for subject, answer in table.items()]


def candidates() -> list[tuple[str, str, str, str, str]]:
    """(kind, subject, answer, question, answer stem) of every candidate."""
    items = []
    items += _kind("capital", CAPITALS, "What is the capital of {s}?", "The capital of {s} is")
    items += _kind("language", LANGUAGES, "What language do people speak in {s}?", "In {s}, people speak")
    items += _kind("continent", CONTINENTS, "On which continent is {s}?", "{S} is in")
    items += _kind("city", CITY_COUNTRY, "In which country is {s}?", "{S} is a city in")
    items += _kind("opposite", OPPOSITES, "What is the opposite of {s}?", "The opposite of {s} is")
    items += _kind("color", COLORS, "What color is {s}?", "The color of {s} is")
    items += _kind("plural", PLURALS, "What is the plural of {s}?", "The plural of {s} is")
    for name, seq in (("day", DAYS), ("month", MONTHS)):
        items += _kind(f"{name} after", {a: b for a, b in zip(seq, seq[1:] + seq[:1])},
                       f"Which {name} comes after {{s}}?", f"The {name} after {{s}} is")
        items += _kind(f"{name} before", {b: a for a, b in zip(seq, seq[1:] + seq[:1])},
                       f"Which {name} comes before {{s}}?", f"The {name} before {{s}} is")
    items += _kind("number after", dict(zip(NUMBERS, NUMBERS[1:])), "Which number comes after {s}?", "The number after {s} is")
    items += _kind("letter after", dict(zip(LETTERS, LETTERS[1:])), "Which letter comes after {s} in the alphabet?",
                   "The letter after {s} is")
    items += [("sum", f"{a} + {b}", str(a + b), f"What is {a} + {b}?", f"{a} + {b} =")
              for a in range(1, 9) for b in range(1, 9) if a + b <= 9]
    return items


def with_counterfactuals(items, first_token, seed: int = 0) -> list[dict]:
    """One counterfactual answer per candidate: another answer of its kind whose first token
    differs from the true answer's (first_token(text) -> the tokenizer's first id of " text")."""
    rng = random.Random(seed)
    pool = {}
    for kind, _, answer, _, _ in items:
        pool.setdefault(kind, [])
        if answer not in pool[kind]:
            pool[kind].append(answer)
    out = []
    for number, (kind, subject, answer, question, stem) in enumerate(items):
        others = [a for a in pool[kind] if first_token(a) != first_token(answer)]
        if not others:
            continue
        fake = rng.choice(others)
        out.append({"id": f"{kind.replace(' ', '-')}:{number}", "kind": kind, "subject": subject,
                    "context": f"{stem} {fake}.", "question": question, "stem": stem,
                    "memory": answer, "counterfactual": fake})
    return out
