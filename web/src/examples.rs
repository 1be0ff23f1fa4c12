//! Example tasks the page offers with one click: a few labelled sentences per label and
//! held-out sentences to score. Written for this project (no dataset text).

pub struct ExampleTask {
    pub name: &'static str,
    pub title: &'static str,
    pub examples: &'static str,
    pub heldout: &'static str,
}

pub const EXAMPLES: &[ExampleTask] = &[
    ExampleTask {
        name: "home-assistant",
        title: "Home assistant",
        examples: "\
weather: will it rain tomorrow
weather: how hot is it going to be this afternoon
weather: do I need an umbrella today
alarm: wake me up at six thirty
alarm: set an alarm for 7 am
alarm: cancel my morning alarm
music: play some jazz
music: put on my workout playlist
music: skip this song
shopping: add milk to my shopping list
shopping: I need to buy eggs and bread
shopping: what is on my grocery list",
        heldout: "\
weather: what's the forecast for the weekend
weather: is it going to snow tonight
alarm: set an alarm for noon
alarm: wake me at five tomorrow
music: play something by the beatles
music: turn the music up and play rock
shopping: put apples on the list
shopping: remind me to buy coffee beans",
    },
    ExampleTask {
        name: "support-tickets",
        title: "Support tickets",
        examples: "\
billing: I was charged twice this month
billing: how do I update my credit card
billing: can I get a refund for my last invoice
login: I forgot my password
login: the app says my account is locked
login: I can't sign in with my email
bug: the page crashes when I click save
bug: the export button does nothing
bug: images don't load on the dashboard",
        heldout: "\
billing: why is my bill higher than usual
billing: please send me a copy of the receipt
login: reset my password please
login: two factor code never arrives
bug: the app freezes when I upload a file
bug: the search results are empty even though data exists",
    },
    ExampleTask {
        name: "travel",
        title: "Travel desk (5 labels, 5 examples each)",
        examples: "\
flight: book me a flight to lisbon on friday
flight: are there any direct flights from chicago to denver
flight: I want to change my return flight to sunday
flight: what time does my plane leave tomorrow
flight: find the cheapest ticket to new york next week
hotel: I need a room near the convention center for two nights
hotel: does the hotel have free breakfast
hotel: book a double room in rome from the 3rd to the 6th
hotel: can I check in early at my hotel
hotel: find a quiet place to stay downtown under 150 a night
car: rent a car at the airport when I land
car: I'd like an suv for the whole week
car: how much is it to return the rental car in another city
car: add a child seat to my car reservation
car: is there a cheaper compact car available
baggage: how many suitcases can I check in
baggage: my luggage did not arrive
baggage: what is the weight limit for a carry on
baggage: can I bring my bike on the plane
baggage: how much does an extra bag cost
visa: do I need a visa to visit japan
visa: how long does it take to get a tourist visa
visa: which documents do I need for a work permit abroad
visa: can I enter canada with an expired passport
visa: is an electronic travel authorization required for the us",
        heldout: "\
flight: get me on the earliest flight to boston
flight: is my flight to madrid delayed
hotel: reserve a hotel room in paris for the weekend
hotel: does my room have a sea view
car: I need a convertible for three days in miami
car: where do I pick up the rental car
baggage: my suitcase was damaged during the flight
baggage: are liquids allowed in hand luggage
visa: what are the visa requirements for brazil
visa: how do I renew my passport before the trip",
    },
];
